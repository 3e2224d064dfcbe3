"""One DAG, two executors: the in-process runner and the Argo CronWorkflow rendering."""
