#!/bin/sh
# A test bed machine's start (under tini, PID 1, which reaps what sshd and dockerd leave):
# make /sys and its cgroup mounts writable, then start sshd and the machine's own dockerd.
#
# Docker mounts /sys and every /sys/fs/cgroup/<controller> read-only, even with every
# capability and systempaths=unconfined; dockerd and runc must write there (--privileged,
# which would mount them read-write, fails on this build machine). A cgroup (v1) mount is
# made writable as a bind mount (only this mount point's flag): remounting the cgroup file
# system itself is refused (EBUSY, "mount point is busy"). Its host key, the
# authorized client key and /etc/docker/daemon.json were delivered into the container before
# it started (orchestrate/testbed/engine.py).
set -eu

mount -o remount,rw /sys
for m in $(awk '$2 ~ "^/sys/fs/cgroup" { print $2 }' /proc/self/mounts); do
  mount -o remount,bind,rw "$m"
done

mkdir -p /run/sshd
/usr/sbin/sshd -e
exec /usr/sbin/dockerd --config-file /etc/docker/daemon.json
