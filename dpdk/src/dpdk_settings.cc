#include "dpdk_settings.h"

#include <arpa/inet.h>
#include <fmt/format.h>

#include <cstdio>
#include <sstream>

#include "host_checks.h"

namespace ramshift::transport::dpdk {

std::optional<uint32_t> parse_ipv4(const std::string& text) {
  in_addr a{};
  if (inet_pton(AF_INET, text.c_str(), &a) != 1) return std::nullopt;
  return ntohl(a.s_addr);
}

std::string ipv4_text(uint32_t h) {
  return fmt::format("{}.{}.{}.{}", h >> 24, (h >> 16) & 255, (h >> 8) & 255, h & 255);
}

Result<DpdkSettings> dpdk_settings_from(const BackendSettings& s) {
  DpdkSettings d;
  if (auto eal = s.find("dpdk-eal")) d.eal_args = std::string(*eal);
  RS_ASSIGN_OR_RETURN(uint64_t port, s.number("dpdk-port", 0));
  if (port > 65535)
    return Status{ErrorCode::kInvalidArgument, fmt::format("--dpdk-port {} is not a port", port)};
  d.port = uint16_t(port);
  if (auto ip = s.find("dpdk-local-ip"); ip && !ip->empty()) {
    d.local_ip = parse_ipv4(std::string(*ip));
    if (!d.local_ip)
      return Status{ErrorCode::kInvalidArgument,
                    fmt::format("--dpdk-local-ip {} is not an IPv4 address", *ip)};
  }
  if (auto mac = s.find("dpdk-peer-mac"); mac && !mac->empty()) {
    std::array<unsigned, 6> b{};
    char tail = 0;
    std::string text(*mac);
    if (std::sscanf(text.c_str(), "%x:%x:%x:%x:%x:%x%c", &b[0], &b[1], &b[2], &b[3], &b[4], &b[5],
                    &tail) != 6)
      return Status{ErrorCode::kInvalidArgument,
                    fmt::format("--dpdk-peer-mac {} is not a MAC (aa:bb:cc:dd:ee:ff)", text)};
    std::array<uint8_t, 6> out{};
    for (size_t i = 0; i < 6; ++i) {
      if (b[i] > 255)
        return Status{ErrorCode::kInvalidArgument, fmt::format("--dpdk-peer-mac {}", text)};
      out[i] = uint8_t(b[i]);
    }
    d.peer_mac = out;
  }
  return d;
}

Result<FaultPlan> fault_plan_from(const char* text) {
  FaultPlan p;
  if (text == nullptr || *text == 0) return p;
  std::stringstream in(text);
  std::string item;
  while (std::getline(in, item, ',')) {
    auto eq = item.find('=');
    std::string key = item.substr(0, eq);
    double value = 0;
    if (eq == std::string::npos || std::sscanf(item.c_str() + eq + 1, "%lf", &value) != 1 ||
        value < 0 || (key != "seed" && value >= 1))
      return Status{ErrorCode::kInvalidArgument,
                    fmt::format("RAMSHIFT_DPDK_TEST_FAULTS: '{}' is not NAME=FRACTION", item)};
    if (key == "loss")
      p.loss = value;
    else if (key == "reorder")
      p.reorder = value;
    else if (key == "duplicate")
      p.duplicate = value;
    else if (key == "seed")
      p.seed = uint64_t(value);
    else
      return Status{ErrorCode::kInvalidArgument,
                    fmt::format("RAMSHIFT_DPDK_TEST_FAULTS: unknown '{}' (loss, reorder, "
                                "duplicate, seed)",
                                key)};
  }
  return p;
}

EalPlan eal_plan(const std::string& eal_args) {
  EalPlan plan;
  std::istringstream in(eal_args);
  std::vector<std::string> words;
  for (std::string w; in >> w;) words.push_back(w);
  for (size_t i = 0; i < words.size(); ++i) {
    const std::string& w = words[i];
    if (w == "--no-huge") plan.no_huge = true;
    if (w == "--no-pci") plan.no_pci = true;
    std::string spec;
    if (w.rfind("--vdev=", 0) == 0) spec = w.substr(7);
    if (w == "--vdev" && i + 1 < words.size()) spec = words[++i];
    if (spec.empty()) continue;
    VirtualDevice v;
    v.name = spec.substr(0, spec.find(','));
    v.driver = v.name;
    while (!v.driver.empty() && v.driver.back() >= '0' && v.driver.back() <= '9')
      v.driver.pop_back();
    for (size_t at = spec.find(','); at != std::string::npos; at = spec.find(',', at + 1)) {
      std::string arg = spec.substr(at + 1, spec.find(',', at + 1) - at - 1);
      if (arg.rfind("iface=", 0) == 0) v.iface = arg.substr(6);
    }
    plan.vdevs.push_back(std::move(v));
  }
  return plan;
}

}  // namespace ramshift::transport::dpdk
