from django.urls import path

from orchestration.api import views

urlpatterns = [
    path("tasks/", views.TaskListCreateView.as_view(), name="task-list"),
    path("tasks/<uuid:pk>/", views.TaskDetailView.as_view(), name="task-detail"),
    path("tasks/<uuid:pk>/cancel/", views.TaskCancelView.as_view(), name="task-cancel"),
    path("tasks/<uuid:pk>/approval/", views.TaskApprovalView.as_view(), name="task-approval"),
]
