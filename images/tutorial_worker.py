"""The classic tutorial's worker, unchanged but for where it finds the master and the key.

    python3 tutorial_worker.py [MASTER_HOST] [KEY_FILE]

It registers the two names, connects, and does ten rounds of ``task.get(timeout=1)`` and
``result.put(...)``. A distproc master in classic mode counts its results.
"""

import queue
import sys
import time
from multiprocessing.managers import BaseManager


# Create a QueueManager like the one on the master:
class QueueManager(BaseManager):
    pass


# This QueueManager only gets the queues from the network, so it registers only the names:
QueueManager.register("get_task_queue")
QueueManager.register("get_result_queue")

# Connect to the server, that is, the machine running the master:
server_addr = sys.argv[1] if len(sys.argv) > 1 else "127.0.0.1"
key_file = sys.argv[2] if len(sys.argv) > 2 else "/key"
print("Connect to server %s..." % server_addr)
# The port and the authkey must be exactly those the master uses:
m = QueueManager(address=(server_addr, 5000), authkey=open(key_file, "rb").read().strip())
# Connect over the network:
m.connect()
# Get the Queue objects:
task = m.get_task_queue()
result = m.get_result_queue()
# Take tasks from the task queue, and write results to the result queue:
for i in range(10):
    try:
        n = task.get(timeout=1)
        print("run task %d * %d..." % (n, n))
        r = "%d * %d = %d" % (n, n, n * n)
        time.sleep(1)
        result.put(r)
    except queue.Empty:
        print("task queue is empty.")
# Done:
print("worker exit.")
