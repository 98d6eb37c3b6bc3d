# SPDX-License-Identifier: GPL-2.0
#
#   make            build module/objcg_shadow.ko against KDIR
#   make demo       the main job: guest VM, small cgroup tree, shadow vs kernel
#   make check      every test (unit, static checks, VM); ends "N passed, N failed"
#   make unit       userspace unit tests of the core only
#
# KDIR: the running kernel's build dir when it has one, else the newest
# Debian linux-headers-*-amd64 installed.
KVER_RUNNING := $(shell uname -r)
KDIR ?= $(firstword $(wildcard /lib/modules/$(KVER_RUNNING)/build) \
	  $(lastword $(sort $(wildcard /usr/src/linux-headers-*-amd64))))
REPO := $(CURDIR)

.PHONY: all module clean demo check unit workloads checkpatch

all: module

module:
	@test -n "$(KDIR)" || { echo "no kernel build dir: install linux-headers-amd64 or set KDIR=" >&2; exit 2; }
	$(MAKE) -C $(KDIR) M=$(REPO) modules

workloads:
	$(MAKE) -C tests/workloads

unit:
	$(MAKE) -C tests/unit

demo:
	scripts/objcg-shadow demo

check:
	tests/run

checkpatch:
	scripts/checkpatch-all

clean:
	-test -z "$(KDIR)" || $(MAKE) -C $(KDIR) M=$(REPO) clean
	-$(MAKE) -C tests/unit clean
	-$(MAKE) -C tests/workloads clean
