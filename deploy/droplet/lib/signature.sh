#!/usr/bin/env bash
# hello-ctl's release signature check: when /etc/hello/allowed_signers pins the
# release key (an operator put it there; hello-ctl never writes it; it holds for
# every --base), a release must arrive with SHA256SUMS and SHA256SUMS.sig
# (build/sign-release), the signature must verify against the pinned key, and the
# upload must be the file SHA256SUMS lists as hello or as this platform's
# hello-<version>-linux-<arch> (an image: the hello-image.json
# it lists, naming the image's ID). Unpinned, nothing is asked. ssh-keygen, the one
# parser of what arrives, runs in the sandbox.
# Sourced by deploy/droplet/hello-ctl (which sets -euo pipefail, parses the options
# and sets base, sums_b64, signature_b64, manifest_b64 and here), never run.
# shellcheck disable=SC2154 # those variables are hello-ctl's

pin=/etc/hello/allowed_signers
checking=''

pinned() { [[ -e $pin || -L $pin ]]; }

checking_folder() { # a root-only folder for what arrived, made once per run
    [[ -z $checking ]] || return 0
    rm -rf "$base"/.checking.* # the lock is ours: any left was a killed run's
    checking=$(mktemp -d "$base/.checking.XXXXXX")
    # shellcheck disable=SC2064 # the folder is fixed now
    trap "rm -rf '$checking'" EXIT
    chmod 0755 "$checking" # the sandbox's user reads it
}

signed_file() { # NAME B64: the base64 text decoded into the checking folder, at most 64 kB
    [[ ${#2} -le 87400 && $2 =~ ^[A-Za-z0-9+/=]+$ ]] || fail "$1 did not arrive whole (base64 of at most 64 kB); nothing changed"
    checking_folder
    base64 -d <<<"$2" >"$checking/$1" 2>/dev/null || fail "$1 did not arrive whole (bad base64); nothing changed"
    chmod 0644 "$checking/$1"
}

or_list() { local IFS='|'; local list="$*"; echo "${list//|/ or }"; } # a or b or c

# SUM NAME...: the pinned key signed a SHA256SUMS whose line for one of the NAMEs
# is SUM, or fail. An older signed release passes too: the pin proves the bytes were
# released, and a rollback goes back to such a one.
check_signed() {
    local sum=$1 name=${2:?check_signed: no name} names=("${@:2}") why dir listed=()
    for name in "${names[@]}"; do
        [[ $name =~ ^[A-Za-z0-9._+-]+$ ]] || fail "'$name' is not a release file name; nothing changed"
    done
    name=${names[0]}
    pinned || return 0
    [[ $sum =~ ^[0-9a-f]{64}$ ]] || fail "'$sum' is not a SHA-256"
    for dir in "$pin" "${pin%/*}" /etc; do
        root_only "$dir" \
            || fail "$dir must be root's, writable by no one else, not a symlink; nothing changed"
    done
    [[ -f $pin ]] || fail "$pin is not a regular file; nothing changed"
    [[ -n $sums_b64 && -n $signature_b64 ]] \
        || fail "this host pins the release key ($pin): $name must come with its signed SHA256SUMS (build/sign-release); unsigned, nothing changed"
    signed_file SHA256SUMS "$sums_b64"
    signed_file SHA256SUMS.sig "$signature_b64"
    cp "$pin" "$checking/allowed_signers" && chmod 0644 "$checking/allowed_signers"
    why=$(heard sandbox -p RuntimeMaxSec=30 ssh-keygen -Y verify -f "$checking/allowed_signers" -I hello-release \
        -n hello-release -s "$checking/SHA256SUMS.sig" <"$checking/SHA256SUMS") \
        || fail "the signature of SHA256SUMS does not verify with the key pinned in $pin (${why:-no answer}): signed by another key, or changed; nothing changed"
    for name in "${names[@]}"; do listed+=(-e "$sum  $name" -e "$sum *$name"); done
    grep -qxF "${listed[@]}" "$checking/SHA256SUMS" \
        || fail "the signed SHA256SUMS does not list $(or_list "${names[@]}") with sha256 $sum: not the release that was signed; nothing changed"
    say "$(or_list "${names[@]}"): sha256 $sum is in SHA256SUMS signed by the pinned key"
}

# ID: the signed SHA256SUMS lists a hello-image.json that names ID
check_signed_image() {
    local id=$1
    pinned || return 0
    [[ -n $manifest_b64 ]] || fail "this host pins the release key ($pin): image $id must come with its signed hello-image.json; nothing changed"
    signed_file hello-image.json "$manifest_b64"
    check_signed "$(sha256sum <"$checking/hello-image.json" | cut -d' ' -f1)" hello-image.json
    grep -qxF "  \"image_id\": \"$id\"," "$checking/hello-image.json" \
        || fail "the signed hello-image.json does not name image $id; nothing changed"
}
