"""The multi-host test bed: ``orchestrate testbed up [--hosts N] | down | status``.

N test machines on this box, each a container on the outer engine with its own sshd and its
own dockerd (its ``/var/lib/docker`` on a labelled volume), on one LAN bridge network. They
stand in for the VMs, lab machines or Raspberry Pis of a real multi-host cluster, so that the
swarm backend and ``orchestrate hosts`` (fabric over ssh) run for real in CI.

What a test machine is: a simulated *host*. It runs as root, with every capability but
SYS_RESOURCE, seccomp, AppArmor and the masked /proc and /sys paths lifted, and it lets root
log in over ssh by key (never by password): a host's administrator logs in like that.
What it is not: a cluster container. The cluster's own containers (master, workers) run
*inside* each machine's dockerd, non-root, read-only and without capabilities, as everywhere.
Nor is it isolation: the machines share this box's kernel, so the test bed proves the
multi-host path (ssh, engines, swarm, overlay traffic between machines), not security between
machines.

Trust: the client key pair and each machine's ssh host key are generated here, on the host
side, and the host keys are delivered into the containers before they start; ``known_hosts``
is written from those keys, never learnt from the network.

Modules: ``plan`` (names, addresses, subnets: no Docker), ``keys`` (key pairs, known_hosts,
ssh config), ``hostsfile`` (hosts.yaml), ``files`` (the state directory), ``image`` (the
machine image, debootstrapped and cached by hash), ``engine`` (the Docker objects), ``ssh``
(fabric with RejectPolicy), ``bed`` (up, down, status) and ``cli``.
"""
