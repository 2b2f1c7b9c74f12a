# Sourced by the measuring scripts: what each of them needs to run the real
# binaries beside each other and leave nothing behind.
#   pids         append the PID of every process started in the background;
#                cleanup (run at exit) kills them and waits for them.
#   pin_server   the command prefix that pins the server to CPU 0, and
#   pin_client   the one that pins a client (load generator, reader, proxy)
#                to CPU 1; both empty, with a note on stdout, when there is
#                one CPU or no taskset.
# Usage, from the repository root (where the scripts cd first):
#   . scripts/lib.sh "what the client is"
pids=()
cleanup() { for p in "${pids[@]:-}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT
pin_server=() pin_client=()
if [ "$(nproc)" -ge 2 ] && command -v taskset >/dev/null; then
  pin_server=(taskset -c 0) pin_client=(taskset -c 1)
else
  echo "note: $(nproc) CPU(s) or no taskset: server and ${1:-client} are not pinned apart"
fi
