// `ramshift doctor`: checks what decides whether this host can migrate at full speed, and
// says how to fix each problem. Every check reads the host directly (verbs, rlimits, sysfs,
// /proc, a real userfaultfd); nothing is assumed.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "ramshift/transport/settings.h"

namespace ramshift::bench {

enum class Verdict {
  kOk,    // fine
  kWarn,  // worth knowing; does not stop full-speed migration
  kFail,  // stops full-speed migration (or migration altogether)
  kSkip,  // does not apply here (e.g. no DPDK backend in this build)
};
const char* verdict_name(Verdict v);

struct Check {
  std::string id;  // stable, for scripts: "rdma.device", "memlock", ...
  Verdict verdict = Verdict::kOk;
  std::string detail;  // what was found
  std::string fix;     // what to do (empty when nothing)
};

struct DoctorOptions {
  uint64_t guest_bytes = 1ull << 30;  // the largest guest this host will migrate
  uint32_t queues = 4;                // queues the migration will use
  // The transport migrations will use ("tcp", "rdma", "dpdk"); empty = any. What only one
  // transport needs (an RDMA device, locked memory, DPDK's huge pages) fails only when that
  // transport is named, and warns otherwise: a tcp-only host without RDMA is not broken.
  std::string transport;
  // A peer to check the route, MTU and link speed to (empty: those checks are skipped).
  std::string peer_host;
  uint16_t peer_port = 0;
  // --tls-dir / --tls-psk / --tls-authz as settings ("tls-dir", ...); empty: no TLS checks.
  transport::BackendSettings tls;
  // Backend settings the backends' own host checks read (dpdk: --dpdk-eal names the devices).
  transport::BackendSettings backend;
};

std::vector<Check> run_doctor(const DoctorOptions& options);
std::string doctor_json(const std::vector<Check>& checks);
bool doctor_passed(const std::vector<Check>& checks);  // no kFail

}  // namespace ramshift::bench
