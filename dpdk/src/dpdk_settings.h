// The dpdk:// settings (transport/settings.h), named like their CLI flags. DPDK-free.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>

#include "ramshift/base/status.h"
#include "ramshift/transport/settings.h"

namespace ramshift::transport::dpdk {

struct DpdkSettings {
  std::string eal_args;              // --dpdk-eal: EAL's own arguments, split on spaces
  uint16_t port = 0;                 // --dpdk-port: the ethdev port to use
  std::optional<uint32_t> local_ip;  // --dpdk-local-ip, host order; a listener uses its URI's
  std::optional<std::array<uint8_t, 6>> peer_mac;  // --dpdk-peer-mac: skips ARP
};

Result<DpdkSettings> dpdk_settings_from(const BackendSettings& s);
// "10.0.0.1" -> host-order address; nothing when it is not a dotted IPv4 address.
std::optional<uint32_t> parse_ipv4(const std::string& text);
std::string ipv4_text(uint32_t host_order);

// The test knob RAMSHIFT_DPDK_TEST_FAULTS="loss=0.05,reorder=0.02,duplicate=0.01,seed=7":
// frames of ours the receive path drops, holds back behind the next one, or delivers twice.
// For tests only; unset (the default) nothing is injected.
struct FaultPlan {
  double loss = 0, reorder = 0, duplicate = 0;
  uint64_t seed = 1;
  bool any() const { return loss > 0 || reorder > 0 || duplicate > 0; }
};
Result<FaultPlan> fault_plan_from(const char* text);

}  // namespace ramshift::transport::dpdk
