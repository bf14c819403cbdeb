// What a DPDK host needs, for `ramshift doctor --transport dpdk`: huge pages, an IOMMU with
// vfio (or no PCI device at all), a NIC bound to a DPDK driver or a virtual device named in
// --dpdk-eal, and the poll-mode driver libraries EAL loads. Read from /proc and /sys, without
// starting EAL (which would take huge pages and devices from a running migration).
#include <fmt/format.h>
#include <rte_build_config.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "host_checks.h"

namespace ramshift::transport::dpdk {
namespace {

namespace fs = std::filesystem;
using Level = HostCheck::Level;

uint64_t meminfo(const std::string& key) {
  std::ifstream in("/proc/meminfo");
  for (std::string line; std::getline(in, line);)
    if (line.rfind(key + ":", 0) == 0) return std::stoull(line.substr(key.size() + 1));
  return 0;
}

std::string first_line(const fs::path& p) {
  std::ifstream in(p);
  std::string line;
  std::getline(in, line);
  return line;
}

bool hugetlbfs_mounted() {
  std::ifstream in("/proc/mounts");
  for (std::string line; std::getline(in, line);)
    if (line.find(" hugetlbfs ") != std::string::npos) return true;
  return false;
}

size_t entries(const fs::path& dir) {
  std::error_code ec;
  size_t n = 0;
  for (auto it = fs::directory_iterator(dir, ec); !ec && it != fs::directory_iterator();
       it.increment(ec))
    ++n;
  return n;
}

// PCI network devices (class 0x02....) bound to a driver DPDK can drive: the generic
// user-space ones, or mlx4/mlx5, whose PMDs work beside the kernel driver (bifurcated).
std::vector<std::string> bound_nics() {
  std::vector<std::string> out;
  std::error_code ec;
  for (auto it = fs::directory_iterator("/sys/bus/pci/devices", ec);
       !ec && it != fs::directory_iterator(); it.increment(ec)) {
    if (first_line(it->path() / "class").rfind("0x02", 0) != 0) continue;
    std::string driver = fs::read_symlink(it->path() / "driver", ec).filename().string();
    ec.clear();
    if (driver == "vfio-pci" || driver == "uio_pci_generic" || driver == "igb_uio" ||
        driver == "mlx5_core" || driver == "mlx4_core")
      out.push_back(fmt::format("{} ({})", it->path().filename().string(), driver));
  }
  return out;
}

HostCheck hugepages(const EalPlan& eal) {
  if (eal.no_huge)
    return {"dpdk.hugepages", Level::kOk,
            "EAL runs without huge pages (--no-huge): fine for virtual devices; a NIC at line "
            "rate wants them",
            ""};
  const uint64_t free_pages = meminfo("HugePages_Free");
  const std::string fix =
      "echo 1024 > /proc/sys/vm/nr_hugepages && mount -t hugetlbfs none /dev/hugepages "
      "(or --dpdk-eal \"--no-huge ...\" for virtual devices)";
  if (free_pages == 0) return {"dpdk.hugepages", Level::kFail, "no free huge pages for DPDK", fix};
  if (!hugetlbfs_mounted())
    return {"dpdk.hugepages", Level::kFail,
            fmt::format("{} free huge pages but no hugetlbfs mounted", free_pages), fix};
  return {"dpdk.hugepages", Level::kOk,
          fmt::format("{} free huge pages of {} KiB, hugetlbfs mounted", free_pages,
                      meminfo("Hugepagesize")),
          ""};
}

std::vector<HostCheck> iommu_and_vfio(const EalPlan& eal) {
  if (eal.no_pci)
    return {{"dpdk.iommu", Level::kSkip, "no PCI device used (--no-pci): no IOMMU needed", ""}};
  std::vector<HostCheck> out;
  const size_t groups = entries("/sys/kernel/iommu_groups");
  const bool noiommu = first_line("/sys/module/vfio/parameters/enable_unsafe_noiommu_mode") == "Y";
  if (groups > 0)
    out.push_back({"dpdk.iommu", Level::kOk, fmt::format("IOMMU on ({} groups)", groups), ""});
  else if (noiommu)
    out.push_back({"dpdk.iommu", Level::kWarn,
                   "no IOMMU; vfio runs in unsafe no-IOMMU mode (the NIC can DMA anywhere)",
                   "enable the IOMMU: intel_iommu=on iommu=pt (or amd_iommu=on) on the kernel "
                   "command line, then reboot"});
  else
    out.push_back({"dpdk.iommu", Level::kFail, "no IOMMU groups: vfio-pci cannot take a NIC",
                   "intel_iommu=on iommu=pt (or amd_iommu=on) on the kernel command line and "
                   "reboot; or a virtual device with --dpdk-eal \"--no-pci --vdev=...\""});
  const bool vfio = fs::exists("/dev/vfio/vfio") && fs::exists("/sys/bus/pci/drivers/vfio-pci");
  out.push_back({"dpdk.vfio", vfio ? Level::kOk : Level::kFail,
                 vfio ? "vfio-pci loaded, /dev/vfio/vfio present" : "vfio-pci is not loaded",
                 vfio ? "" : "modprobe vfio-pci"});
  return out;
}

HostCheck device(const EalPlan& eal) {
  if (!eal.vdevs.empty()) {
    std::vector<std::string> missing;
    for (const auto& v : eal.vdevs)
      if (!v.iface.empty() && !fs::exists("/sys/class/net/" + v.iface)) missing.push_back(v.iface);
    std::string names;
    for (const auto& v : eal.vdevs) names += (names.empty() ? "" : ", ") + v.name;
    if (!missing.empty())
      return {"dpdk.device", Level::kFail,
              fmt::format("virtual device {} names interface {}, which this network namespace "
                          "lacks",
                          names, missing.front()),
              "run in the namespace that holds it (ip netns exec NS ramshift ...), or name "
              "another iface= in --dpdk-eal"};
    return {"dpdk.device", Level::kOk, fmt::format("virtual device {} named", names), ""};
  }
  const std::string fix =
      "bind a NIC: dpdk-devbind.py --bind=vfio-pci 0000:01:00.0 (dpdk-dev has it), or name a "
      "virtual device: --dpdk-eal \"--no-huge --no-pci --vdev=net_af_packet0,iface=eth1\"";
  if (eal.no_pci) return {"dpdk.device", Level::kFail, "--no-pci and no --vdev: no port", fix};
  auto nics = bound_nics();
  if (nics.empty())
    return {"dpdk.device", Level::kFail, "no NIC bound to a DPDK driver and no --vdev named", fix};
  std::string list;
  for (const auto& n : nics) list += (list.empty() ? "" : ", ") + n;
  return {"dpdk.device", Level::kOk, "NICs for DPDK: " + list, ""};
}

HostCheck pmds(const EalPlan& eal) {
  const fs::path dir = RTE_EAL_PMD_PATH;
  std::vector<std::string> missing, found;
  for (const auto& v : eal.vdevs) {
    const std::string lib = "librte_" + v.driver + ".so";
    (fs::exists(dir / lib) ? found : missing).push_back(v.driver);
  }
  if (!missing.empty())
    return {"dpdk.pmd", Level::kFail,
            fmt::format("no poll-mode driver for {} in {}", missing.front(), dir.string()),
            "check the vdev's name (net_af_packet, net_af_xdp, net_memif, net_tap, ...); "
            "apt-get install dpdk (Debian packages the drivers)"};
  size_t net = 0;
  std::error_code ec;
  for (auto it = fs::directory_iterator(dir, ec); !ec && it != fs::directory_iterator();
       it.increment(ec)) {
    const std::string name = it->path().filename().string();
    if (name.rfind("librte_net_", 0) == 0 && name.ends_with(".so")) ++net;
  }
  if (net == 0)
    return {"dpdk.pmd", Level::kFail,
            fmt::format("no network poll-mode drivers in {}", dir.string()),
            "apt-get install dpdk (scripts/setup.sh does)"};
  std::string detail = fmt::format("{} network poll-mode drivers in {}", net, dir.string());
  if (!found.empty()) {
    std::string names;
    for (const auto& f : found) names += (names.empty() ? "" : ", ") + f;
    detail += " (" + names + " among them)";
  }
  return {"dpdk.pmd", Level::kOk, detail, ""};
}

}  // namespace

std::vector<HostCheck> host_checks(const DpdkSettings& s) {
  EalPlan eal = eal_plan(s.eal_args);
  std::vector<HostCheck> out{hugepages(eal)};
  for (auto& c : iommu_and_vfio(eal)) out.push_back(std::move(c));
  out.push_back(device(eal));
  out.push_back(pmds(eal));
  return out;
}

}  // namespace ramshift::transport::dpdk
