#include <fmt/format.h>

#include <cstdio>
#include <fstream>

#include "commands.h"
#include "ramshift/base/log.h"
#include "ramshift/base/units.h"
#include "ramshift/transport/registry.h"

namespace ramshift::cli {

int exit_code_for(const Status& s) {
  switch (s.code()) {
    case ErrorCode::kOk:
      return 0;
    case ErrorCode::kInvalidArgument:
    case ErrorCode::kNotFound:
    case ErrorCode::kNoSpace:
    case ErrorCode::kAddressInUse:
    case ErrorCode::kUnreachable:
    case ErrorCode::kMismatch:
      return 2;
    default:
      return 1;
  }
}

void BackendFlags::add_to(CLI::App* cmd) {
  const char* g = "rdma:// (ignored by other transports)";
  cmd->add_option("--rdma-ring-slots", ring_slots,
                  "slots per queue of the ring this side receives into = messages the peer "
                  "may have in flight (2..1024)")
      ->capture_default_str()
      ->group(g);
  cmd->add_option("--rdma-slot-size", slot_size,
                  "bytes per slot of the ring this side receives into; larger messages "
                  "travel in several (4K..8M)")
      ->capture_default_str()
      ->group(g);
  cmd->add_option("--rdma-sq-depth", send_queue_depth, "send work requests in flight per queue")
      ->capture_default_str()
      ->group(g);
  cmd->add_option("--rdma-signal-every", signal_every,
                  "request a completion every N work requests (selective signaling)")
      ->capture_default_str()
      ->group(g);
  cmd->add_option("--rdma-inline", max_inline, "send payloads up to N bytes inline")
      ->capture_default_str()
      ->group(g);
  cmd->add_option("--rdma-ack-timeout", ack_timeout,
                  "local ACK timeout exponent: 4.096 us * 2^N before a retransmission "
                  "(1..31; 0 = rdma_cm's default from the route)")
      ->capture_default_str()
      ->group(g);
  cmd->add_option("--rdma-busy-poll", busy_poll,
                  "true: completion pollers spin (a core per queue); false: sleep on events")
      ->capture_default_str()
      ->group(g);
  cmd->add_option("--rdma-memory-windows", memory_windows,
                  "true: the peer's keys to guest memory are memory windows bound to one queue "
                  "each, where the device has them; false: the memory regions' own keys")
      ->capture_default_str()
      ->group(g);
  cmd->add_option("--rdma-tos", tos,
                  "IP type of service of every queue's packets (RoCE v2; DSCP = TOS >> 2, e.g. "
                  "106 = DSCP 26), to put migration in the fabric's lossless class")
      ->check(CLI::Range(0, 255))
      ->group(g);
  cmd->add_option("--rdma-gid-index", gid_index,
                  "the GID index every queue must use (perftest's -x); checked once connected, "
                  "as rdma_cm picks the GID from the address and the port's RoCE mode")
      ->check(CLI::Range(0, 255))
      ->group(g);
  cmd->add_option("--rdma-device", rdma_device,
                  "the RDMA device to use (as ibv_devices names it); the address must be on it")
      ->group(g);
  cmd->add_option("--rdma-source-ip", rdma_source_ip,
                  "connecting side: the local address to go out from (which port of a "
                  "multi-homed host)")
      ->group(g);
  const char* d = "dpdk:// (ignored by other transports)";
  cmd->add_option("--dpdk-eal", dpdk_eal,
                  "EAL arguments, e.g. \"--no-huge --no-pci "
                  "--vdev=net_af_packet0,iface=eth1 --file-prefix=rs1\"")
      ->group(d);
  cmd->add_option("--dpdk-port", dpdk_port, "the DPDK ethdev port to use")
      ->capture_default_str()
      ->group(d);
  cmd->add_option("--dpdk-local-ip", dpdk_local_ip,
                  "this side's IPv4 address on the port (the connecting side needs it)")
      ->group(d);
  cmd->add_option("--dpdk-peer-mac", dpdk_peer_mac,
                  "the peer's MAC (aa:bb:cc:dd:ee:ff) instead of asking by ARP")
      ->group(d);
  add_tls_options(cmd, tls_dir, tls_psk, tls_authz);
  cmd->add_option("--tls-ktls", tls_ktls,
                  "true: hand the TLS record layer to the kernel where it offers it (TCP_ULP "
                  "tls); false: encrypt in user space")
      ->capture_default_str()
      ->group(kTlsGroup);
  cmd->add_flag("--encrypt", encrypt,
                "rdma://: seal every message with AES-256-GCM, keys from the TLS handshake "
                "(needs --tls-dir or --tls-psk, on both sides); raw pages then travel as "
                "messages instead of RDMA WRITE. tcp:// with TLS is always encrypted")
      ->group(kTlsGroup);
}

void add_cpus_option(CLI::App* cmd, std::string& list) {
  cmd->add_option("--cpus", list,
                  "run the queue threads on these CPUs, e.g. 2-3 or 0,2 (queue N on the "
                  "N-th in the list, round robin; as taskset -c writes them)");
}

void add_tls_options(CLI::App* cmd, std::string& dir, std::string& psk, std::string& authz) {
  cmd->add_option("--tls-dir", dir,
                  "TLS 1.3 with X.509: a folder in QEMU's layout (ca-cert.pem, server-cert.pem, "
                  "server-key.pem, client-cert.pem, client-key.pem), e.g. /etc/pki/qemu")
      ->group(kTlsGroup);
  cmd->add_option("--tls-psk", psk,
                  "TLS 1.3 with a pre-shared key: QEMU's keys.psk (identity:hexkey per line)")
      ->group(kTlsGroup);
  cmd->add_option("--tls-authz", authz,
                  "who may connect: a file of identities (certificate subjects as `doctor` "
                  "prints them, or PSK identities), one per line, or a ';'-separated list")
      ->group(kTlsGroup);
}

Result<transport::BackendSettings> BackendFlags::resolve() const {
  transport::BackendSettings s;
  s.set_number("rdma-ring-slots", uint64_t{ring_slots});
  s.set("rdma-slot-size", slot_size);
  s.set_number("rdma-sq-depth", uint64_t{send_queue_depth});
  s.set_number("rdma-signal-every", uint64_t{signal_every});
  s.set_number("rdma-inline", uint64_t{max_inline});
  s.set_number("rdma-ack-timeout", uint64_t{ack_timeout});
  s.set_flag("rdma-busy-poll", busy_poll);
  if (!memory_windows) s.set_flag("rdma-memory-windows", false);
  if (tos >= 0) s.set_number("rdma-tos", static_cast<uint64_t>(tos));
  if (gid_index >= 0) s.set_number("rdma-gid-index", static_cast<uint64_t>(gid_index));
  if (!rdma_device.empty()) s.set("rdma-device", rdma_device);
  if (!rdma_source_ip.empty()) s.set("rdma-source-ip", rdma_source_ip);
  if (!dpdk_eal.empty()) s.set("dpdk-eal", dpdk_eal);
  if (dpdk_port != 0) s.set_number("dpdk-port", uint64_t{dpdk_port});
  if (!dpdk_local_ip.empty()) s.set("dpdk-local-ip", dpdk_local_ip);
  if (!dpdk_peer_mac.empty()) s.set("dpdk-peer-mac", dpdk_peer_mac);
  if (!tls_dir.empty()) s.set("tls-dir", tls_dir);
  if (!tls_psk.empty()) s.set("tls-psk", tls_psk);
  if (!tls_authz.empty()) s.set("tls-authz", tls_authz);
  if (!tls_ktls) s.set_flag("tls-ktls", false);
  if (encrypt) s.set_flag("tls-encrypt", true);
  // Checked now, before any connection, by the backend that reads them (in a binary
  // without it they are ignored, as by every other transport).
  RS_RETURN_IF_ERROR(transport::check_settings(s));
  return s;
}

int fail_with(const Status& s) {
  log::error("{}", s.message());
  return exit_code_for(s);
}

void write_json_text(const std::string& json, const std::string& path) {
  if (path.empty()) return;
  std::string text = json + "\n";
  if (path == "-") {
    std::fputs(text.c_str(), stdout);
    std::fflush(stdout);
    return;
  }
  std::ofstream out(path);
  out << text;
  if (!out) log::error("cannot write the JSON report to {}", path);
}

void write_json(const migration::MigrationReport& report, const std::string& path) {
  write_json_text(report.to_json(), path);
}

void print_summary(const migration::MigrationReport& r) {
  if (log::level() > log::Level::kWarn) return;
  if (!r.completed) {
    fmt::print(stderr, "ramshift: {} failed after {:.0f} ms: {}\n", r.role, r.total_ms,
               r.error.message());
    return;
  }
  double seconds = r.total_ms / 1000;
  fmt::print(
      stderr,
      "ramshift: {} completed and verified: {} in {:.2f} s ({}, {:.0f} Mbit/s), {} on the wire "
      "over {} {} queue(s), codec {}\n"
      "ramshift: pages zero {}{} xbzrle {} zstd {} raw {} placed {}; setup {:.0f} ms\n",
      r.role, format_bytes(r.guest_bytes), seconds,
      format_rate(seconds > 0 ? r.guest_bytes / seconds : 0), r.throughput_mbps(),
      format_bytes(r.wire_bytes), r.queues, r.transport, r.codec, r.pages.zero,
      r.pages.zero_unsent ? fmt::format(" (+{} not sent: zero already there)", r.pages.zero_unsent)
                          : "",
      r.pages.xbzrle, r.pages.zstd, r.pages.raw, r.pages.placed, r.setup_ms);
  if (const auto& d = r.downtime_detail; d && r.downtime_ms)
    fmt::print(
        stderr,
        "ramshift: downtime {:.1f} ms (predicted {:.1f}): last pages {:.1f}, device state "
        "{:.1f}, verify {:.1f}{}, hand-off {:.1f}{}\n",
        *r.downtime_ms, d->predicted_ms, d->last_pages_ms, d->device_state_ms, d->verify_ms,
        d->verify_full_ms > 0 ? fmt::format(" (hashing here {:.1f})", d->verify_full_ms) : "",
        d->handoff_ms,
        d->aborted_switchovers > 0
            ? fmt::format("; {} earlier switch-over(s) aborted, the guest resumed after at most "
                          "{:.1f} ms",
                          d->aborted_switchovers, d->longest_aborted_pause_ms)
            : "");
  else if (d)
    fmt::print(stderr, "ramshift: the guest resumed here {:.1f} ms after the hand-off{}\n",
               d->resume_ms,
               d->aborted_switchovers > 0
                   ? fmt::format(" ({} earlier copy(ies) verified here and dropped: the "
                                 "source's switch-over aborted)",
                                 d->aborted_switchovers)
                   : "");
}

}  // namespace ramshift::cli
