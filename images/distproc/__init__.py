"""distproc: the master/worker queue program of multiprocessing.managers, made reliable."""
