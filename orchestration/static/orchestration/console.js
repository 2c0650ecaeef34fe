// The task console (templates/admin/orchestration/task/console.html). A file, not an inline script: the admin's
// content security policy allows scripts from this site only.
// A step's snapshots load when opened: a 200-step page stays light.
document.querySelectorAll("#timeline details[data-src]").forEach(function (details) {
  details.addEventListener("toggle", function () {
    var pre = details.querySelector("pre");
    if (!details.open || pre.dataset.loaded) { return; }
    pre.dataset.loaded = "1";
    pre.textContent = "loading...";
    fetch(details.dataset.src, {credentials: "same-origin"})
      .then(function (response) { return response.text(); })
      .then(function (text) { pre.textContent = text; })
      .catch(function () { pre.textContent = "could not load; the API has it"; });
  });
});
