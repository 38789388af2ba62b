#!/usr/bin/env bash
# Fuzzes the code that reads untrusted bytes, with cargo-fuzz (libFuzzer, AddressSanitizer, debug
# assertions on): the event decoder, the two batch splitters and the gzip body decoding. The
# targets and their invariants are in fuzz/fuzz_targets/. Run by hand; not part of CI or of
# scripts/test.sh (a run takes minutes of both cores, and a finding needs a person to read it).
#
# Each target runs for FUZZ_SECONDS (default 60) from its checked-in seeds (fuzz/seeds/<target>/;
# the gzip seeds are made here from them) plus the corpus earlier runs grew (fuzz/corpus/<target>/,
# git-ignored, kept between runs). Prints one row per target (executions, crashes) and exits 1 if
# any target crashed, naming the input that did it (fuzz/artifacts/<target>/). Reproduce one with
#   cargo +nightly fuzz run -a <target> fuzz/artifacts/<target>/<file>
# then turn it into a regression test beside the code that failed.
#
#   FUZZ_SECONDS=60                  seconds per target
#   FUZZ_TARGETS="event_decode ..."  which targets (default: all four)
#
# Needs the nightly toolchain (rustup toolchain install nightly) and a C++ compiler (libFuzzer is
# built from source); installs cargo-fuzz when it is missing.
set -euo pipefail

cd "$(dirname "$0")/.."
root=$(pwd)
seconds=${FUZZ_SECONDS:-60}
targets=${FUZZ_TARGETS:-"event_decode batch_split_json batch_split_ndjson gzip_body"}
# The same flags for build and run, or `run` rebuilds. -a: debug assertions and overflow checks.
flags=(-a)

if ! rustup toolchain list | grep -q '^nightly'; then
    echo "fuzz.sh: cargo-fuzz needs the nightly toolchain; install it with: rustup toolchain install nightly" >&2
    exit 2
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "fuzz.sh: installing cargo-fuzz" >&2
    cargo install cargo-fuzz --locked
fi

# Gzip bodies made from the JSON seeds: single and multi-member (the gateway reads
# both), a truncated one, and a bomb well past the target's 64 KiB limit.
gzip_seeds="$root/fuzz/corpus/gzip_body"
mkdir -p "$gzip_seeds"
gzip -9 -c -n fuzz/seeds/batch_split_json/two.json >"$gzip_seeds/seed-one-member.gz"
cat "$gzip_seeds/seed-one-member.gz" "$gzip_seeds/seed-one-member.gz" >"$gzip_seeds/seed-two-members.gz"
head -c 40 "$gzip_seeds/seed-one-member.gz" >"$gzip_seeds/seed-truncated.gz"
head -c 1000000 /dev/zero | gzip -9 -c -n >"$gzip_seeds/seed-bomb.gz"
printf '' | gzip -c -n >"$gzip_seeds/seed-empty.gz"

echo "fuzz.sh: building the fuzz targets (nightly, AddressSanitizer)" >&2
cargo +nightly fuzz build "${flags[@]}"

mkdir -p fuzz/artifacts
rows=()
crashed=()
for target in $targets; do
    corpus="$root/fuzz/corpus/$target"
    mkdir -p "$corpus"
    seeds=()
    [ -d "fuzz/seeds/$target" ] && seeds=("$root/fuzz/seeds/$target")
    log="$root/fuzz/artifacts/$target.log"
    echo "fuzz.sh: $target for ${seconds}s (log: ${log#"$root"/})" >&2
    # The first corpus folder is the one libFuzzer adds new inputs to; the seeds stay untouched.
    status=0
    cargo +nightly fuzz run "${flags[@]}" "$target" "$corpus" "${seeds[@]}" -- \
        -max_total_time="$seconds" -timeout=25 -print_final_stats=1 >"$log" 2>&1 || status=$?

    execs=$(sed -n 's/^stat::number_of_executed_units: *\([0-9]*\).*/\1/p' "$log" | tail -n 1)
    if [ -z "$execs" ]; then # no final stats after a crash: the last status line counts
        execs=$(sed -n 's/^#\([0-9][0-9]*\).*/\1/p' "$log" | tail -n 1)
    fi
    artifacts=$(sed -n 's/.*Test unit written to \(.*\)$/\1/p' "$log")
    crashes=$(printf '%s' "$artifacts" | grep -c . || true)
    if [ "$status" -ne 0 ] && [ "$crashes" -eq 0 ]; then
        crashes="?" # failed without writing an input (a build error, say): see the log
        crashed+=("$target: exit $status, see ${log#"$root"/}")
    fi
    while IFS= read -r artifact; do
        [ -n "$artifact" ] && crashed+=("$target: ${artifact#"$root"/}")
    done <<<"$artifacts"
    rows+=("$(printf '%-20s %14s %8s' "$target" "${execs:-0}" "$crashes")")
done

printf '\n%-20s %14s %8s\n' target executions crashes
printf '%s\n' "${rows[@]}"
if [ "${#crashed[@]}" -gt 0 ]; then
    printf '\nfuzz.sh: crashes found; reproduce each with `cargo +nightly fuzz run -a <target> <input>`:\n' >&2
    printf '  %s\n' "${crashed[@]}" >&2
    exit 1
fi
