#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-or-later
# Prints the domain XML of the Linux test guest: libvirt/hintmig-guest.xml
# with its @NAME@ fields filled in.
#   libvirt/guest-xml.sh NAME MEM_MIB GUEST_DIR CMDLINE EMULATOR SERIAL
# GUEST_DIR holds linux-guest/build.sh's vmlinuz and initrd.gz; SERIAL is
# the file the guest's console is written to.
set -euo pipefail

if [ $# -ne 6 ]; then
    sed -n '3,7p' "$0" | sed 's/^# \{0,1\}//' >&2
    exit 2
fi
xml=$(<"$(dirname "${BASH_SOURCE[0]}")/hintmig-guest.xml")
xml=${xml//@NAME@/"$1"}
xml=${xml//@MEM_MIB@/"$2"}
xml=${xml//@KERNEL@/"$3/vmlinuz"}
xml=${xml//@INITRD@/"$3/initrd.gz"}
xml=${xml//@CMDLINE@/"$4"}
xml=${xml//@EMULATOR@/"$5"}
xml=${xml//@SERIAL@/"$6"}
printf '%s\n' "$xml"
