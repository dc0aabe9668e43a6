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

# cgroup v2 (GitHub's runners; this build machine has v1, so it does not run this): move
# this machine's processes out of its root cgroup, so that dockerd may enable controllers
# for its containers below it (what moby's hack/dind does).
if [ -f /sys/fs/cgroup/cgroup.controllers ]; then
  mkdir -p /sys/fs/cgroup/init
  xargs -rn1 < /sys/fs/cgroup/cgroup.procs > /sys/fs/cgroup/init/cgroup.procs 2>/dev/null || :
  sed -e 's/ / +/g' -e 's/^/+/' < /sys/fs/cgroup/cgroup.controllers \
    > /sys/fs/cgroup/cgroup.subtree_control \
    || echo "testbed-start: cannot delegate the cgroup v2 controllers" >&2
fi

mkdir -p /run/sshd
/usr/sbin/sshd -e
exec /usr/sbin/dockerd --config-file /etc/docker/daemon.json
