from django.urls import path

from orchestration.api import views

urlpatterns = [
    path("queue/bulk-retry/", views.QueueBulkRetryView.as_view(), name="queue-bulk-retry"),
    path("tasks/", views.TaskListCreateView.as_view(), name="task-list"),
    path("tasks/<uuid:pk>/", views.TaskDetailView.as_view(), name="task-detail"),
    path("tasks/<uuid:pk>/cancel/", views.TaskCancelView.as_view(), name="task-cancel"),
    path("tasks/<uuid:pk>/approval/", views.TaskApprovalView.as_view(), name="task-approval"),
    path("tasks/<uuid:pk>/claim/", views.TaskClaimView.as_view(), name="task-claim"),
    path("tasks/<uuid:pk>/release/", views.TaskReleaseView.as_view(), name="task-release"),
    path("tasks/<uuid:pk>/assign/", views.TaskAssignView.as_view(), name="task-assign"),
    path("tasks/<uuid:pk>/notes/", views.TaskNoteView.as_view(), name="task-note"),
    path("tasks/<uuid:pk>/retry/", views.TaskRetryView.as_view(), name="task-retry"),
    path("tasks/<uuid:pk>/resolve/", views.TaskResolveView.as_view(), name="task-resolve"),
    path("tasks/<uuid:pk>/send-back/", views.TaskSendBackView.as_view(), name="task-send-back"),
    path("tasks/<uuid:pk>/close/", views.TaskCloseView.as_view(), name="task-close"),
]
