"""Local services for the cluster path on one machine (``mlops services up | down | status``).

The same components the cluster runs, on 127.0.0.1 only, started detached with their PIDs
recorded under ``$MLOPS_HOME/services/``: PostgreSQL (``postgres.py``), a SeaweedFS S3 server
(``seaweedfs.py``) and ``mlflow server`` on both (``mlflow_server.py``); ``stack.py`` starts,
stops and reports them in order, ``process.py`` starts and stops one process group by PID.
"""
