// `ramshift doctor --transport dpdk`: what a DPDK host needs (host_checks.cc, with DPDK), and
// the reading of --dpdk-eal it rests on (eal_plan, in dpdk_settings.cc: DPDK-free, tested).
#pragma once

#include <string>
#include <vector>

#include "dpdk_settings.h"
#include "ramshift/transport/registry.h"

namespace ramshift::transport::dpdk {

struct VirtualDevice {
  std::string name;    // "net_af_packet0"
  std::string driver;  // "net_af_packet": the name less its instance number
  std::string iface;   // its iface= argument (af_packet, af_xdp), empty if none
};

// What EAL arguments ask of the host: huge pages or not, PCI or not, which virtual devices.
struct EalPlan {
  bool no_huge = false;
  bool no_pci = false;
  std::vector<VirtualDevice> vdevs;
};
EalPlan eal_plan(const std::string& eal_args);

std::vector<HostCheck> host_checks(const DpdkSettings& settings);

}  // namespace ramshift::transport::dpdk
