#!/usr/bin/env bash
# Machines as release names say them (linux-amd64, linux-arm64), from `uname -m` or
# from a file's ELF header. Sourced by deploy/droplet/hello-ctl on the host and by
# build/deploy on the client, so both sides name a machine the same way; never run.

platform_of_machine() { # UNAME_M: linux-amd64, linux-arm64, linux-<it>, or linux-unknown
    case $1 in
        x86_64) echo linux-amd64 ;;
        aarch64 | arm64) echo linux-arm64 ;;
        '') echo linux-unknown ;;
        *) echo "linux-${1:0:40}" ;;
    esac
}

this_platform() { platform_of_machine "$(uname -m)"; } # the machine this runs on

machine_of() { # FILE: linux-amd64 or linux-arm64 from its ELF header, what other ELF it is, or nothing
    local head
    head=$(od -An -tx1 -N20 -v "$1" | tr -d ' \n')
    [[ ${head:0:8} == 7f454c46 ]] || return 0 # no ELF file at all: `hello version` decides
    [[ ${#head} -eq 40 && ${head:8:4} == 0201 ]] || { echo "a 32-bit, big-endian or cut ELF file"; return 0; }
    case ${head:36:4} in
        3e00) echo linux-amd64 ;;
        b700) echo linux-arm64 ;;
        *) echo "an ELF file for machine 0x${head:38:2}${head:36:2}" ;;
    esac
}
