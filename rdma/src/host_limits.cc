#include "host_limits.h"

#include <arpa/inet.h>
#include <fmt/format.h>
#include <ifaddrs.h>
#include <infiniband/verbs.h>
#include <sys/resource.h>

#include <cerrno>
#include <filesystem>
#include <fstream>

#include "ramshift/base/units.h"
#include "verbs_handles.h"

namespace ramshift::transport::rdma {
namespace {

// CAP_IPC_LOCK (bit 14 of CapEff) lets a process pin memory beyond RLIMIT_MEMLOCK.
bool has_ipc_lock() {
  std::ifstream status("/proc/self/status");
  std::string line;
  while (std::getline(status, line)) {
    if (line.rfind("CapEff:", 0) == 0) {
      uint64_t caps = std::stoull(line.substr(7), nullptr, 16);
      return (caps >> 14) & 1;
    }
  }
  return false;
}

// Bytes this process has locked (VmLck) or pinned (VmPin: earlier registrations) already.
uint64_t locked_bytes() {
  std::ifstream status("/proc/self/status");
  std::string line;
  uint64_t kb = 0;
  while (std::getline(status, line))
    if (line.rfind("VmLck:", 0) == 0 || line.rfind("VmPin:", 0) == 0)
      kb += std::stoull(line.substr(6));
  return kb * 1024;
}

std::string memlock_advice(uint64_t limit, uint64_t needed, const std::string& what) {
  return fmt::format(
      "locked-memory limit (RLIMIT_MEMLOCK) is {} but registering {} needs at least {}; "
      "raise it: `ulimit -l unlimited` in the shell that starts ramshift, LimitMEMLOCK=infinity "
      "for a systemd service, or a memlock line in /etc/security/limits.conf",
      format_bytes(limit), what, format_bytes(needed));
}

}  // namespace

std::vector<std::string> device_names() {
  int n = 0;
  DeviceList list(ibv_get_device_list(&n));
  std::vector<std::string> names;
  if (!list) return names;
  for (int i = 0; i < n; ++i) names.emplace_back(ibv_get_device_name(list.get()[i]));
  return names;
}

std::vector<Device> describe_devices() {
  int n = 0;
  DeviceList list(ibv_get_device_list(&n));
  std::vector<Device> out;
  if (!list) return out;
  namespace fs = std::filesystem;
  auto read_line = [](const fs::path& p) {
    std::ifstream in(p);
    std::string line;
    std::getline(in, line);
    return line;
  };
  for (int i = 0; i < n; ++i) {
    Device dev;
    dev.name = ibv_get_device_name(list.get()[i]);
    const fs::path sys = fs::path("/sys/class/infiniband") / dev.name;
    std::string numa = read_line(sys / "device" / "numa_node");
    if (!numa.empty()) dev.numa_node = std::atoi(numa.c_str());
    std::unique_ptr<ibv_context, int (*)(ibv_context*)> ctx(ibv_open_device(list.get()[i]),
                                                            ibv_close_device);
    ibv_device_attr attr{};
    if (ctx && ibv_query_device(ctx.get(), &attr) == 0) {
      for (uint32_t p = 1; p <= attr.phys_port_cnt; ++p) {
        ibv_port_attr pa{};
        if (ibv_query_port(ctx.get(), static_cast<uint8_t>(p), &pa) != 0) continue;
        DevicePort port;
        port.number = p;
        port.active = pa.state == IBV_PORT_ACTIVE;
        port.state = ibv_port_state_str(pa.state);
        port.active_mtu = 128u << pa.active_mtu;  // IBV_MTU_256 = 1
        port.max_mtu = 128u << pa.max_mtu;
        port.link_layer = pa.link_layer == IBV_LINK_LAYER_ETHERNET ? "Ethernet" : "InfiniBand";
        const fs::path ps = sys / "ports" / std::to_string(p);
        port.netdev = read_line(ps / "gid_attrs" / "ndevs" / "0");
        for (int g = 0; g < pa.gid_tbl_len && g < 256; ++g) {
          std::string type = read_line(ps / "gid_attrs" / "types" / std::to_string(g));
          std::string gid = read_line(ps / "gids" / std::to_string(g));
          // An IPv4-mapped GID is ::ffff:a.b.c.d, written 0000:...:ffff:xxxx:xxxx.
          if (type == "RoCE v2" && gid.rfind("0000:0000:0000:0000:0000:ffff:", 0) == 0) {
            port.address_index = g;
            port.address = gid;
            break;
          }
        }
        dev.ports.push_back(std::move(port));
      }
    }
    out.push_back(std::move(dev));
  }
  return out;
}

Status require_device() {
  if (!device_names().empty()) return Status::ok();
  return Status(ErrorCode::kNotFound,
                "no RDMA device found; use tcp:// or load rdma_rxe (modprobe rdma_rxe && rdma "
                "link add rxe0 type rxe netdev IFACE); `ramshift doctor` lists what verbs sees");
}

Result<std::string> device_address() {
  RS_RETURN_IF_ERROR(require_device());
  // sysfs names each RoCE port's network interface: ports/N/gid_attrs/ndevs/INDEX.
  std::vector<std::string> netdevs;
  std::error_code ec;
  for (const auto& dev : std::filesystem::directory_iterator("/sys/class/infiniband", ec))
    for (const auto& port : std::filesystem::directory_iterator(dev.path() / "ports", ec)) {
      std::ifstream nd(port.path() / "gid_attrs" / "ndevs" / "0");
      std::string name;
      if (nd >> name) netdevs.push_back(name);
    }
  ifaddrs* list = nullptr;
  if (getifaddrs(&list) != 0) return errno_status(ErrorCode::kIo, "getifaddrs", errno);
  std::string found;
  for (const auto& want : netdevs) {
    for (ifaddrs* a = list; a && found.empty(); a = a->ifa_next) {
      if (!a->ifa_addr || a->ifa_addr->sa_family != AF_INET || want != a->ifa_name) continue;
      char text[INET_ADDRSTRLEN];
      inet_ntop(AF_INET, &reinterpret_cast<sockaddr_in*>(a->ifa_addr)->sin_addr, text, sizeof text);
      found = text;
    }
    if (!found.empty()) break;
  }
  freeifaddrs(list);
  if (found.empty())
    return Status(ErrorCode::kNotFound,
                  "no RDMA device has an IPv4 address on its network interface; give one "
                  "to the interface rdma_rxe (or the NIC) is bound to");
  return found;
}

Status check_memlock(uint64_t bytes, const std::string& what) {
  rlimit lim{};
  if (getrlimit(RLIMIT_MEMLOCK, &lim) != 0 || lim.rlim_cur == RLIM_INFINITY) return Status::ok();
  if (has_ipc_lock()) return Status::ok();
  uint64_t needed = locked_bytes() + bytes;
  if (needed <= lim.rlim_cur) return Status::ok();
  return Status(ErrorCode::kNoSpace, memlock_advice(lim.rlim_cur, needed, what));
}

Status registration_error(int err, uint64_t bytes, const std::string& what) {
  if (err == ENOMEM || err == EAGAIN || err == EPERM) {
    rlimit lim{};
    if (getrlimit(RLIMIT_MEMLOCK, &lim) == 0 && lim.rlim_cur != RLIM_INFINITY && !has_ipc_lock())
      return Status(ErrorCode::kNoSpace, memlock_advice(lim.rlim_cur, locked_bytes() + bytes, what),
                    err);
  }
  return errno_status(ErrorCode::kIo, fmt::format("registering {} with the RDMA device", what),
                      err);
}

}  // namespace ramshift::transport::rdma
