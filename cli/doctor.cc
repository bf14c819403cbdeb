// `ramshift doctor`: host checks with a fix for each problem.
#include <fmt/format.h>

#include "commands.h"
#include "ramshift/base/units.h"
#include "ramshift/bench/doctor.h"
#include "ramshift/migration/config.h"
#include "ramshift/transport/uri.h"

namespace ramshift::cli {

Runner add_doctor(CLI::App& app) {
  struct Options {
    std::string guest_size = "1G";
    uint32_t queues = migration::default_queues();
    std::string transport;
    std::string to;
    std::string json;
    std::string tls_dir, tls_psk, tls_authz;
    std::string dpdk_eal;
  };
  auto o = std::make_shared<Options>();
  auto* cmd = app.add_subcommand(
      "doctor", "check this host for full-speed migration (exit 0) or list what to fix (exit 1)");
  cmd->add_option("--guest-size", o->guest_size, "largest guest this host migrates")
      ->capture_default_str();
  cmd->add_option("--queues", o->queues, "queues migrations will use")
      ->capture_default_str()
      ->check(CLI::Range(1, 64));
  cmd->add_option("--transport", o->transport,
                  "the transport migrations will use: tcp|rdma|dpdk; what only another one "
                  "needs then warns instead of failing (default: any)")
      ->check(CLI::IsMember({"tcp", "rdma", "dpdk"}));
  cmd->add_option("--to", o->to,
                  "a peer (URI or tcp:HOST:PORT) to check the route, MTU and link speed to; "
                  "its scheme is the transport unless --transport says otherwise");
  cmd->add_option("--json", o->json, "write the checks as JSON to FILE ('-' = stdout)");
  add_tls_options(cmd, o->tls_dir, o->tls_psk, o->tls_authz);
  cmd->add_option("--dpdk-eal", o->dpdk_eal,
                  "the EAL arguments migrations will use: the dpdk checks read which devices "
                  "(--vdev, PCI) and whether huge pages (--no-huge) they need");
  return [o]() -> int {
    bench::DoctorOptions d;
    auto size = parse_size(o->guest_size);
    if (!size) return fail_with(size.status());
    d.guest_bytes = *size;
    d.queues = o->queues;
    d.transport = o->transport;
    if (!o->to.empty()) {
      auto peer = transport::parse_uri(o->to);
      if (!peer) return fail_with(peer.status());
      if (peer->scheme != "loopback") {  // an in-process name, no route to check
        d.peer_host = peer->host;
        d.peer_port = peer->port;
        if (d.transport.empty()) d.transport = peer->scheme;
      }
    }
    if (!o->dpdk_eal.empty()) d.backend.set("dpdk-eal", o->dpdk_eal);
    if (!o->tls_dir.empty()) d.tls.set("tls-dir", o->tls_dir);
    if (!o->tls_psk.empty()) d.tls.set("tls-psk", o->tls_psk);
    if (!o->tls_authz.empty()) d.tls.set("tls-authz", o->tls_authz);
    auto checks = bench::run_doctor(d);
    // With --json - the JSON owns stdout; the human lines go to stderr.
    FILE* out = o->json == "-" ? stderr : stdout;
    for (const auto& c : checks) {
      std::fprintf(out, "%-5s %-24s %s\n", bench::verdict_name(c.verdict), c.id.c_str(),
                   c.detail.c_str());
      if (!c.fix.empty() &&
          (c.verdict == bench::Verdict::kFail || c.verdict == bench::Verdict::kWarn))
        std::fprintf(out, "      %-24s fix: %s\n", "", c.fix.c_str());
    }
    const bool passed = bench::doctor_passed(checks);
    const std::string over = d.transport.empty() ? "" : " over " + d.transport + "://";
    std::fprintf(
        out, "%s\n",
        passed
            ? ("this host can migrate at full speed" + over).c_str()
            : ("this host cannot migrate at full speed" + over + ": fix the `fail` lines").c_str());
    write_json_text(bench::doctor_json(checks), o->json);
    return passed ? 0 : 1;
  };
}

}  // namespace ramshift::cli
