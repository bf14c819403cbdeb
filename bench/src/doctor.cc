#include "ramshift/bench/doctor.h"

#include <fmt/format.h>
#include <sched.h>
#include <sys/resource.h>
#include <sys/utsname.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>

#include "doctor_checks.h"
#include "ramshift/base/mapped_memory.h"
#include "ramshift/base/units.h"
#include "ramshift/guest/dirty_tracker.h"
#include "ramshift/security/tls_settings.h"
#include "ramshift/transport/registry.h"

namespace ramshift::bench {
namespace {

namespace fs = std::filesystem;

std::string read_line(const fs::path& p) {
  std::ifstream in(p);
  std::string line;
  std::getline(in, line);
  return line;
}

// A /proc/meminfo or /proc/self/status field (the number before its unit).
uint64_t proc_field(const char* file, const std::string& key) {
  std::ifstream in(file);
  std::string line;
  while (std::getline(in, line))
    if (line.rfind(key + ":", 0) == 0) return std::stoull(line.substr(key.size() + 1));
  return 0;
}

bool has_ipc_lock() {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line))
    if (line.rfind("CapEff:", 0) == 0) return (std::stoull(line.substr(7), nullptr, 16) >> 14) & 1;
  return false;
}

void check_rdma(std::vector<Check>& out) {
  // The device facts come from the rdma backend through the registry; a binary without it
  // has an empty slot there, and this check says so.
  auto devices = transport::list_devices("rdma");
  if (!devices) {
    out.push_back({"rdma.device", Verdict::kFail, "this build of ramshift has no rdma backend",
                   "install libibverbs-dev and librdmacm-dev (scripts/setup.sh does) and rebuild"});
    return;
  }
  if (devices->empty()) {
    out.push_back({"rdma.device", Verdict::kFail, "no RDMA device found (verbs lists none)",
                   "load the NIC's RDMA driver, or for testing soft-RoCE: modprobe rdma_rxe && "
                   "rdma link add rxe0 type rxe netdev IFACE; tcp:// works meanwhile"});
    return;
  }
  std::vector<std::string> names;
  for (const auto& d : *devices) names.push_back(d.name);
  out.push_back({"rdma.device", Verdict::kOk, fmt::format("{}", fmt::join(names, ", ")), ""});
  for (const auto& d : *devices) {
    for (const auto& p : d.ports) {
      const std::string id = fmt::format("rdma.port.{}/{}", d.name, p.number);
      if (!p.active) {
        out.push_back(
            {id, Verdict::kFail, fmt::format("{} port {} is {}", d.name, p.number, p.state),
             p.netdev.empty() ? "check the cable and the switch port"
                              : fmt::format("bring {} up: ip link set {} up", p.netdev, p.netdev)});
        continue;
      }
      out.push_back({id, Verdict::kOk,
                     fmt::format("{} port {} active, {}{}", d.name, p.number, p.link_layer,
                                 p.netdev.empty() ? "" : " on " + p.netdev),
                     ""});
      // RoCE rides Ethernet frames: a 1500-byte netdev caps the RDMA MTU at 1024.
      Verdict mtu_v =
          p.active_mtu >= 4096 || p.active_mtu >= p.max_mtu ? Verdict::kOk : Verdict::kWarn;
      out.push_back({id + ".mtu", mtu_v,
                     fmt::format("active MTU {} (port maximum {})", p.active_mtu, p.max_mtu),
                     mtu_v == Verdict::kOk
                         ? ""
                         : fmt::format("raise the interface MTU (ip link set {} mtu 9000, and on "
                                       "the switch) so RDMA can use 4096-byte frames",
                                       p.netdev.empty() ? "IFACE" : p.netdev)});
      if (p.link_layer == "Ethernet")
        out.push_back(
            {id + ".gid", p.address_index >= 0 ? Verdict::kOk : Verdict::kFail,
             p.address_index >= 0 ? fmt::format("RoCE v2 GID {} = {}", p.address_index, p.address)
                                  : "no RoCE v2 GID with an IPv4 address",
             p.address_index >= 0 ? ""
                                  : fmt::format("give {} an IPv4 address; rdma:// URIs name it",
                                                p.netdev.empty() ? "the interface" : p.netdev)});
    }
  }
  // NUMA: a NIC on another node than the guest's memory crosses the socket link per byte.
  size_t node_count = 0;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator("/sys/devices/system/node", ec)) {
    auto n = e.path().filename().string();
    if (n.rfind("node", 0) == 0 && n.size() > 4 && std::isdigit(n[4])) ++node_count;
  }
  for (const auto& d : *devices) {
    if (node_count <= 1) {
      out.push_back({"numa." + d.name, Verdict::kOk,
                     fmt::format("one NUMA node: {} and guest memory share it", d.name), ""});
    } else if (d.numa_node < 0) {
      out.push_back({"numa." + d.name, Verdict::kWarn,
                     fmt::format("{} NUMA nodes; the kernel does not say which one {} hangs off",
                                 node_count, d.name),
                     "check the platform's PCIe layout and pin with numactl"});
    } else {
      out.push_back({"numa." + d.name, Verdict::kWarn,
                     fmt::format("{} is on NUMA node {} of {}", d.name, d.numa_node, node_count),
                     fmt::format("run the VMM and ramshift on that node: numactl "
                                 "--cpunodebind={0} --membind={0} ...",
                                 d.numa_node)});
    }
  }
}

void check_memlock(std::vector<Check>& out, const DoctorOptions& o) {
  rlimit lim{};
  getrlimit(RLIMIT_MEMLOCK, &lim);
  // The guest plus the transport's rings (8 slots x 512 KiB each way per queue).
  const uint64_t needed = o.guest_bytes + uint64_t{o.queues} * 2 * 8 * (512u << 10);
  if (lim.rlim_cur == RLIM_INFINITY) {
    out.push_back({"memlock", Verdict::kOk, "locked-memory limit is unlimited", ""});
  } else if (has_ipc_lock()) {
    out.push_back({"memlock", Verdict::kOk,
                   fmt::format("limit {} but CAP_IPC_LOCK lifts it for this user",
                               format_bytes(lim.rlim_cur)),
                   ""});
  } else if (lim.rlim_cur < needed) {
    out.push_back(
        {"memlock", Verdict::kFail,
         fmt::format("locked-memory limit {} < {} needed to register a {} guest",
                     format_bytes(lim.rlim_cur), format_bytes(needed), format_bytes(o.guest_bytes)),
         "ulimit -l unlimited (shell), LimitMEMLOCK=infinity (systemd), or a memlock "
         "line in /etc/security/limits.conf"});
  } else {
    out.push_back({"memlock", Verdict::kOk,
                   fmt::format("locked-memory limit {} covers {}", format_bytes(lim.rlim_cur),
                               format_bytes(needed)),
                   ""});
  }
}

void check_huge_pages(std::vector<Check>& out) {
  const uint64_t total = proc_field("/proc/meminfo", "HugePages_Total");
  const uint64_t size_kb = proc_field("/proc/meminfo", "Hugepagesize");
  std::string thp = read_line("/sys/kernel/mm/transparent_hugepage/enabled");
  bool thp_on =
      thp.find("[always]") != std::string::npos || thp.find("[madvise]") != std::string::npos;
  // Huge pages shrink the page tables verbs pins and the NIC's translation cache misses.
  Verdict v = total > 0 || thp_on ? Verdict::kOk : Verdict::kWarn;
  out.push_back({"hugepages", v,
                 fmt::format("{} huge pages of {} reserved; transparent huge pages: {}", total,
                             format_bytes(size_kb * 1024), thp.empty() ? "not available" : thp),
                 v == Verdict::kOk ? ""
                                   : "back guests with huge pages (hugetlbfs) or enable THP: echo "
                                     "madvise > /sys/kernel/mm/transparent_hugepage/enabled"});
}

void check_dirty_tracking(std::vector<Check>& out) {
  auto mem = MappedMemory::anonymous(16 * host_page_size());
  if (!mem) {
    out.push_back({"userfaultfd", Verdict::kFail, mem.status().message(), ""});
    return;
  }
  utsname u{};
  uname(&u);
  // Real trackers on a real mapping: what a live migration will get.
  // One tracker at a time: the second would find the range registered already.
  if (auto faults = guest::DirtyTracker::start(mem->bytes(), guest::DirtyMechanism::kFaults);
      !faults)
    out.push_back({"userfaultfd", Verdict::kFail,
                   "userfaultfd write-protect is unavailable: " + faults.status().message(),
                   "live migration needs Linux >= 5.7 with CONFIG_USERFAULTFD and "
                   "CONFIG_HAVE_ARCH_USERFAULTFD_WP; as non-root also set "
                   "vm.unprivileged_userfaultfd=1"});
  else
    out.push_back({"userfaultfd", Verdict::kOk, "userfaultfd with write-protect works", ""});
  auto scan = guest::DirtyTracker::start(mem->bytes(), guest::DirtyMechanism::kPagemapScan);
  if (scan)
    out.push_back({"pagemap_scan", Verdict::kOk,
                   fmt::format("PAGEMAP_SCAN with async write-protect (kernel {})", u.release),
                   ""});
  else
    out.push_back({"pagemap_scan", Verdict::kWarn,
                   fmt::format("no PAGEMAP_SCAN on kernel {}: dirty tracking takes one fault per "
                               "first write to a page each round",
                               u.release),
                   "a kernel >= 6.7 tracks writes without faults (lower guest slowdown)"});
}

void check_cpus(std::vector<Check>& out, const DoctorOptions& o) {
  cpu_set_t set;
  CPU_ZERO(&set);
  sched_getaffinity(0, sizeof set, &set);
  const int cpus = CPU_COUNT(&set);
  // Each queue has a sender thread and, on the far side, a receiver; codecs run in them.
  Verdict v = cpus >= static_cast<int>(o.queues) ? Verdict::kOk : Verdict::kWarn;
  out.push_back({"cpus", v, fmt::format("{} CPUs usable for {} queues", cpus, o.queues),
                 v == Verdict::kOk ? ""
                                   : fmt::format("use --queues {} or fewer, or give ramshift "
                                                 "more CPUs; queue threads share cores otherwise",
                                                 cpus)});
  std::map<std::string, int> governors;
  for (int c = 0; c < CPU_SETSIZE; ++c) {
    if (!CPU_ISSET(c, &set)) continue;
    std::string g =
        read_line(fmt::format("/sys/devices/system/cpu/cpu{}/cpufreq/scaling_governor", c));
    if (!g.empty()) ++governors[g];
  }
  if (governors.empty()) {
    out.push_back({"cpufreq", Verdict::kSkip,
                   "no cpufreq governor exposed (a VM, or the firmware controls frequency)", ""});
  } else if (governors.size() == 1 && governors.begin()->first == "performance") {
    out.push_back({"cpufreq", Verdict::kOk, "every CPU runs the performance governor", ""});
  } else {
    std::vector<std::string> parts;
    for (const auto& [g, n] : governors) parts.push_back(fmt::format("{} on {}", g, n));
    out.push_back({"cpufreq", Verdict::kWarn,
                   "frequency governors: " + fmt::format("{}", fmt::join(parts, ", ")),
                   "cpupower frequency-set -g performance (clock ramps cost throughput at "
                   "the start of each round)"});
  }
}

// What the DPDK backend needs of the host (huge pages, IOMMU/vfio, a port, its PMD): the
// backend checks it through the registry, reading its own --dpdk-eal.
void check_dpdk(std::vector<Check>& out, const transport::BackendSettings& settings) {
  const transport::Backend* dpdk = transport::backends().find("dpdk");
  if (!dpdk || !dpdk->available() || !dpdk->host_checks) {
    out.push_back({"dpdk.hugepages", Verdict::kSkip,
                   "the DPDK backend is not in this build" +
                       (dpdk && !dpdk->available() ? ": " + dpdk->absent_reason : ""),
                   ""});
    return;
  }
  for (auto& c : dpdk->host_checks(settings)) {
    using L = transport::HostCheck::Level;
    Verdict v = c.level == L::kOk     ? Verdict::kOk
                : c.level == L::kWarn ? Verdict::kWarn
                : c.level == L::kFail ? Verdict::kFail
                                      : Verdict::kSkip;
    out.push_back({c.id, v, c.detail, c.fix});
  }
}

// The credentials --tls-* name: readable, in their validity period, signed by the CA, each
// key matching its certificate (security/ does the reading).
void check_tls(std::vector<Check>& out, const transport::BackendSettings& settings) {
  if (settings.empty()) return;
  auto tls = security::TlsSettings::from(settings);
  if (!tls) {
    out.push_back({"tls", Verdict::kFail, tls.status().message(), ""});
    return;
  }
  for (const auto& c : security::check_credentials(*tls)) {
    Verdict v = !c.present ? Verdict::kSkip : c.ok ? Verdict::kOk : Verdict::kFail;
    std::string fix;
    if (!c.ok)
      fix = c.name.ends_with("-key.pem")
                ? "use the key generated with this certificate"
                : "re-issue it from the CA in ca-cert.pem (docs/security.md shows the commands)";
    out.push_back({"tls." + c.name, v, c.detail, fix});
  }
}

}  // namespace

const char* verdict_name(Verdict v) {
  switch (v) {
    case Verdict::kOk:
      return "ok";
    case Verdict::kWarn:
      return "warn";
    case Verdict::kFail:
      return "fail";
    case Verdict::kSkip:
      return "skip";
  }
  return "?";
}

std::vector<Check> run_doctor(const DoctorOptions& options) {
  std::vector<Check> out;
  check_rdma(out);
  check_memlock(out, options);
  check_huge_pages(out);
  check_dirty_tracking(out);
  check_cpus(out, options);
  check_dpdk(out, options.backend);
  check_network(out, options);
  check_tls(out, options.tls);
  // A failure that only one transport cares about is a warning for the others.
  for (auto& c : out) {
    const std::string needs = c.id.rfind("rdma.", 0) == 0 || c.id == "memlock" ? "rdma"
                              : c.id.rfind("dpdk.", 0) == 0                    ? "dpdk"
                                                                               : "";
    if (c.verdict != Verdict::kFail || needs.empty() || needs == options.transport) continue;
    if (needs == "rdma" && options.transport == "dpdk" && c.id == "memlock") continue;
    c.verdict = Verdict::kWarn;
    c.detail += fmt::format(" (only {}:// needs it)", needs);
  }
  return out;
}

bool doctor_passed(const std::vector<Check>& checks) {
  for (const auto& c : checks)
    if (c.verdict == Verdict::kFail) return false;
  return true;
}

std::string doctor_json(const std::vector<Check>& checks) {
  nlohmann::json j = {{"passed", doctor_passed(checks)}, {"checks", nlohmann::json::array()}};
  for (const auto& c : checks)
    j["checks"].push_back(
        {{"id", c.id}, {"verdict", verdict_name(c.verdict)}, {"detail", c.detail}, {"fix", c.fix}});
  return j.dump(2);
}

}  // namespace ramshift::bench
