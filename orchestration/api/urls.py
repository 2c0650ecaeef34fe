from django.urls import include, path

from orchestration.api import queue_views, views

urlpatterns = [
    path("", include("orchestration.api.webhook_urls")),
    path("queue/bulk-retry/", queue_views.QueueBulkRetryView.as_view(), name="queue-bulk-retry"),
    path("tasks/", views.TaskListCreateView.as_view(), name="task-list"),
    path("tasks/<uuid:pk>/", views.TaskDetailView.as_view(), name="task-detail"),
    path("tasks/<uuid:pk>/cancel/", views.TaskCancelView.as_view(), name="task-cancel"),
    path("tasks/<uuid:pk>/approval/", views.TaskApprovalView.as_view(), name="task-approval"),
    path("tasks/<uuid:pk>/claim/", queue_views.TaskClaimView.as_view(), name="task-claim"),
    path("tasks/<uuid:pk>/release/", queue_views.TaskReleaseView.as_view(), name="task-release"),
    path("tasks/<uuid:pk>/assign/", queue_views.TaskAssignView.as_view(), name="task-assign"),
    path("tasks/<uuid:pk>/notes/", queue_views.TaskNoteView.as_view(), name="task-note"),
    path("tasks/<uuid:pk>/retry/", queue_views.TaskRetryView.as_view(), name="task-retry"),
    path("tasks/<uuid:pk>/resolve/", queue_views.TaskResolveView.as_view(), name="task-resolve"),
    path("tasks/<uuid:pk>/send-back/", queue_views.TaskSendBackView.as_view(), name="task-send-back"),
    path("tasks/<uuid:pk>/close/", queue_views.TaskCloseView.as_view(), name="task-close"),
]
