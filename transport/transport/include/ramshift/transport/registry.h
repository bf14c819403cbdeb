// The backend registry: which transport serves a URI scheme in this binary.
//
// The core knows backends only through this table. Each entry gives a scheme its listen and
// connect factories, the check of its own settings (settings.h), its device listing (for
// `ramshift doctor` and `demo`) and its static traits, such as the batch size it prefers.
// loopback and tcp are entered by the core itself; every other backend library registers
// itself from its own folder with a file-scope BackendRegistrar, linked into each executable
// whole (see rdma/CMakeLists.txt). A backend this binary does not carry still registers, as
// an empty slot that says why (option off, library missing at configure, not implemented), so
// `dpdk://` is refused with the reason rather than as an unknown scheme.
//
// Threading: entries are added during static initialisation (or by a test on its own
// registry) and never removed; lookups may come from any thread.
#pragma once

#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "ramshift/base/status.h"
#include "ramshift/transport/raw_bench.h"
#include "ramshift/transport/settings.h"
#include "ramshift/transport/transport.h"
#include "ramshift/transport/uri.h"

namespace ramshift::transport {

// How a scheme's URIs name a peer: HOST:PORT (tcp, rdma, ...) or a bare name (loopback).
enum class AddressForm { kHostPort, kName };

// What a backend offers whatever its connection: the engine picks batch sizes and paths from
// these before a connection exists (Connection::capabilities() tells the rest).
struct BackendTraits {
  bool one_sided_write = false;  // places bytes in the peer's registered memory
  bool remote_read = false;      // reads the peer's registered memory (post-copy faults)
  // The batch a sender should build when the user does not say, in bytes; 0: no preference
  // (the engine's default). A backend whose per-message cost is high prefers larger batches.
  uint32_t preferred_batch_bytes = 0;
};

// One port of a device, as `ramshift doctor` prints it.
struct DevicePort {
  uint32_t number = 0;
  bool active = false;
  std::string state;        // the backend's word for it: "active", "down", "init", ...
  std::string link_layer;   // "Ethernet", "InfiniBand", ...
  std::string netdev;       // the kernel network interface behind the port; empty if none
  uint32_t active_mtu = 0;  // bytes per frame the port uses now
  uint32_t max_mtu = 0;     // ... and could use
  // The address peers reach the port by and its index in the port's table (RoCE v2: the
  // first GID with an IPv4 address); -1 and empty when it has none.
  int address_index = -1;
  std::string address;
};

// A device a backend can open (an RDMA NIC, a DPDK port).
struct Device {
  std::string name;
  int numa_node = -1;  // -1: unknown or a single-node host
  std::vector<DevicePort> ports;
};

// One thing a backend needs of this host, as `ramshift doctor` prints it, with the fix.
struct HostCheck {
  enum class Level { kOk, kWarn, kFail, kSkip };
  std::string id;  // stable, for scripts: "dpdk.hugepages", ...
  Level level = Level::kOk;
  std::string detail;  // what was found
  std::string fix;     // what to do (empty when nothing)
};

using ListenFactory =
    std::function<Result<std::unique_ptr<Listener>>(const Uri&, const TransportOptions&)>;
using ConnectFactory = std::function<Result<std::unique_ptr<Connection>>(
    const Uri&, uint32_t queues, const TransportOptions&)>;

struct Backend {
  std::string scheme;   // "tcp", "rdma", ...
  std::string summary;  // one line for listings: "verbs: RC queue pairs, one-sided writes"
  AddressForm address_form = AddressForm::kHostPort;
  BackendTraits traits;
  // Non-empty: an empty slot, and why this binary lacks the backend. Factories stay unset.
  std::string absent_reason;

  ListenFactory listen;
  ConnectFactory connect;
  // Validates the settings this backend owns ("<scheme>-..."), ignoring the others. Unset:
  // the backend has none.
  std::function<Status(const BackendSettings&)> check_settings;
  // Devices the backend can open (empty when none). Unset: the backend has no devices.
  std::function<Result<std::vector<Device>>()> list_devices;
  // The address a listener of this backend should use on this host (rdma: the RDMA
  // device's IPv4 address); kNotFound without one. Unset: no such notion.
  std::function<Result<std::string>()> device_address;
  // What the backend needs of this host (doctor), read with the command's settings (dpdk:
  // its EAL arguments name the devices). Unset: nothing beyond the core's own checks.
  std::function<std::vector<HostCheck>(const BackendSettings&)> host_checks;
  // The port's raw ceiling, frames blasted and counted with no protocol (raw_bench.h,
  // `bench --raw`). Unset: the backend has no raw mode (only dpdk has one).
  RawBenchFunction raw_bench;

  bool available() const { return absent_reason.empty(); }
};

class BackendRegistry {
 public:
  // kInvalidArgument when the scheme is registered already (the first entry stays) or the
  // entry is incomplete (no scheme; available without both factories).
  Status add(Backend backend);
  // The entry for `scheme` (available or an empty slot), or nullptr.
  const Backend* find(std::string_view scheme) const;
  // The available entry for `scheme`; kInvalidArgument saying why not otherwise.
  Result<const Backend*> require(std::string_view scheme) const;
  // Every entry, in registration order.
  std::vector<const Backend*> all() const;

 private:
  mutable std::mutex mu_;
  std::vector<std::unique_ptr<Backend>> entries_;  // pointers handed out stay valid
};

// The process's registry: loopback and tcp, then whatever the linked backends registered.
BackendRegistry& backends();

// Registers `backend` in backends() at static initialisation; a refusal is logged.
struct BackendRegistrar {
  explicit BackendRegistrar(Backend backend);
};

// Makes `backend`'s listen and connect refuse settings that ask for TLS (--tls-dir,
// --tls-psk) with the reason, for a backend that cannot authenticate its peers yet (rdma,
// dpdk): asking for security never yields a plaintext channel.
void refuse_security_settings(Backend& backend);

// Runs every available backend's check of its own settings (a command resolving its flags).
Status check_settings(const BackendSettings& settings);

// Devices of the backend for `scheme`; kInvalidArgument when this binary lacks it or it has
// no devices to list.
Result<std::vector<Device>> list_devices(std::string_view scheme);

// Where a listener of `scheme` should bind on this host (Backend::device_address).
Result<std::string> device_address(std::string_view scheme);

}  // namespace ramshift::transport
