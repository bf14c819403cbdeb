#include "runtime.h"

#include <dlfcn.h>
#include <unistd.h>

#include <cinttypes>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <vector>

namespace ramshift::qemu::preload {
namespace {

template <typename F>
F next(const char* name) {
  return reinterpret_cast<F>(dlsym(RTLD_NEXT, name));
}

struct Registry {
  std::mutex mu;
  std::vector<std::shared_ptr<ChannelStats>> channels;
  std::set<std::string> said;
  std::vector<std::string> notes;
  std::string fallback[2];
  bool fallback_tentative[2] = {false, false};
  uint64_t registrations = 0;
  uint64_t registered_bytes = 0;
  double registration_ms = 0;
};
// Never destroyed: QEMU's threads may still report while the process exits.
Registry& registry() {
  static auto* r = new Registry();
  return *r;
}

// What the source's channel gave the destination: null unless it moved to RDMA.
nlohmann::json keys_json(const ChannelStats& c) {
  if (c.role != Role::kSource || !c.rdma) return nlohmann::json();
  return nlohmann::json(c.windows ? "memory windows" : "region keys");
}

}  // namespace

const RealFunctions& real() {
  static const RealFunctions r{
      next<decltype(RealFunctions::connect)>("connect"),
      next<decltype(RealFunctions::accept)>("accept"),
      next<decltype(RealFunctions::accept4)>("accept4"),
      next<decltype(RealFunctions::sendmsg)>("sendmsg"),
      next<decltype(RealFunctions::recvmsg)>("recvmsg"),
      next<decltype(RealFunctions::read)>("read"),
      next<decltype(RealFunctions::readv)>("readv"),
      next<decltype(RealFunctions::write)>("write"),
      next<decltype(RealFunctions::writev)>("writev"),
      next<decltype(RealFunctions::close)>("close"),
  };
  return r;
}

const Settings& settings() {
  static const Settings s = [] {
    Settings out;
    const char* t = std::getenv("RAMSHIFT_QEMU_TRANSPORT");
    out.enabled = !t || std::strcmp(t, "tcp") != 0;
    if (const char* p = std::getenv("RAMSHIFT_QEMU_STATS")) out.stats_path = p;
    for (auto [env, name] : {std::pair{"RAMSHIFT_QEMU_TLS_DIR", "tls-dir"},
                             std::pair{"RAMSHIFT_QEMU_TLS_PSK", "tls-psk"},
                             std::pair{"RAMSHIFT_QEMU_TLS_AUTHZ", "tls-authz"}})
      if (const char* v = std::getenv(env); v && *v) out.tls.set(name, v);
    out.authenticate = transport::security_requested(out.tls);
    if (const char* w = std::getenv("RAMSHIFT_QEMU_MEMORY_WINDOWS"))
      out.memory_windows = std::strcmp(w, "false") != 0;
    if (const char* p = std::getenv("RAMSHIFT_QEMU_PEER_TIMEOUT"); p && std::atof(p) > 0)
      out.peer_timeout = std::chrono::milliseconds(static_cast<int64_t>(std::atof(p) * 1000));
    return out;
  }();
  return s;
}

std::span<std::byte> mapping_of(const void* p, size_t len) {
  auto at = reinterpret_cast<uintptr_t>(p);
  FILE* f = std::fopen("/proc/self/maps", "re");
  if (!f) return {};
  char line[512];
  std::span<std::byte> found;
  while (std::fgets(line, sizeof line, f)) {
    uintptr_t lo = 0, hi = 0;
    char perms[5] = {};
    if (std::sscanf(line, "%" SCNxPTR "-%" SCNxPTR " %4s", &lo, &hi, perms) != 3) continue;
    if (at < lo || at + len > hi) continue;
    if (perms[0] == 'r' && perms[1] == 'w')
      found = {reinterpret_cast<std::byte*>(lo), static_cast<size_t>(hi - lo)};
    break;
  }
  std::fclose(f);
  return found;
}

const char* role_name(Role r) { return r == Role::kSource ? "source" : "destination"; }

Result<std::shared_ptr<transport::ChannelSecurity>> security_for(Role role) {
  static std::mutex mu;
  // Never destroyed: QEMU's threads may still connect while the process exits.
  static auto* loaded = new std::optional<Result<std::shared_ptr<transport::ChannelSecurity>>>[2];
  std::lock_guard lock(mu);
  auto& slot = loaded[role == Role::kSource ? 0 : 1];
  if (!slot)
    slot = transport::channel_security(settings().tls, role == Role::kSource
                                                           ? transport::PeerRole::kClient
                                                           : transport::PeerRole::kServer);
  return *slot;
}

void ChannelStats::touch() {
  int64_t now = std::chrono::duration_cast<std::chrono::nanoseconds>(
                    std::chrono::steady_clock::now().time_since_epoch())
                    .count();
  last_io_ns.store(now, std::memory_order_relaxed);
  int64_t zero = 0;
  first_io_ns.compare_exchange_strong(zero, now, std::memory_order_relaxed);
}

std::shared_ptr<ChannelStats> new_channel_stats(Role role) {
  auto& r = registry();
  std::lock_guard lock(r.mu);
  auto c = std::make_shared<ChannelStats>();
  c->role = role;
  for (auto& o : r.channels) c->index += o->role == role;
  r.channels.push_back(c);
  return c;
}

void note_once(const std::string& key, const std::string& message) {
  auto& r = registry();
  {
    std::lock_guard lock(r.mu);
    if (!r.said.insert(key).second) return;
    r.notes.push_back(message);
  }
  // The file first: QEMU may exit on the failure this note explains as soon as the line is
  // out (its load fails), and the stats file must not then lack what stderr said.
  write_stats();
  std::fprintf(stderr, "ramshift-qemu: %s\n", message.c_str());
}

void note_fallback(Role role, const std::string& reason, bool tentative) {
  {
    auto& r = registry();
    std::lock_guard lock(r.mu);
    const int i = role == Role::kSource ? 0 : 1;
    if (r.fallback[i].empty() || (r.fallback_tentative[i] && !tentative)) {
      r.fallback[i] = reason;
      r.fallback_tentative[i] = tentative;
    }
  }
  note_once(std::string("fallback:") + role_name(role) + reason,
            std::string(role_name(role)) + ": plain TCP: " + reason);
}

void note_registration(const void* begin, uint64_t bytes, double ms) {
  auto& r = registry();
  std::lock_guard lock(r.mu);
  (void)begin;
  ++r.registrations;
  r.registered_bytes += bytes;
  r.registration_ms += ms;
}

void write_stats() {
  const std::string& path = settings().stats_path;
  if (path.empty()) return;
  nlohmann::json j;
  {
    auto& r = registry();
    std::lock_guard lock(r.mu);
    j["library"] = "ramshift-qemu";
    j["transport"] = settings().enabled ? "rdma" : "tcp";
    j["notes"] = r.notes;
    j["authenticated"] = settings().authenticate;
    j["registrations"] = r.registrations;
    j["registered_bytes"] = r.registered_bytes;
    j["registration_ms"] = r.registration_ms;
    for (Role role : {Role::kSource, Role::kDestination}) {
      nlohmann::json side;
      uint64_t pages = 0, reads = 0, rdma = 0, sock = 0, frames = 0, plain = 0;
      int n = 0, on_rdma = 0;
      side["channels"] = nlohmann::json::array();
      for (auto& c : r.channels) {
        if (c->role != role) continue;
        double s = (c->last_io_ns.load() - c->first_io_ns.load()) * 1e-9;
        uint64_t total = c->rdma_bytes + c->socket_bytes;
        const char* ended = c->exposure_ended.load();
        side["channels"].push_back(
            {{"index", c->index},
             {"rdma", c->rdma.load()},
             {"rdma_pages", c->rdma_pages.load()},
             {"rdma_reads", c->rdma_reads.load()},
             {"rdma_bytes", c->rdma_bytes.load()},
             {"socket_bytes", c->socket_bytes.load()},
             {"frames", c->frames.load()},
             {"plain_bytes", c->plain_bytes.load()},
             {"keys", keys_json(*c)},
             {"exposure_ended", ended ? nlohmann::json(ended) : nlohmann::json()},
             {"exposed_after_close_ms", c->exposed_after_close_ms.load()},
             {"seconds", s},
             {"mb_per_s", s > 0 ? total / s / 1e6 : 0.0}});
        pages += c->rdma_pages;
        reads += c->rdma_reads;
        rdma += c->rdma_bytes;
        sock += c->socket_bytes;
        frames += c->frames;
        plain += c->plain_bytes;
        ++n;
        on_rdma += c->rdma;
      }
      if (n == 0) continue;
      const std::string& why = r.fallback[role == Role::kSource ? 0 : 1];
      side["multifd_channels"] = n;
      side["rdma_channels"] = on_rdma;
      side["mode"] = on_rdma > 0 ? "rdma" : "tcp";
      side["fallback_reason"] = why.empty() || on_rdma > 0 ? nlohmann::json() : nlohmann::json(why);
      side["rdma_pages"] = pages;
      side["rdma_reads"] = reads;
      side["rdma_bytes"] = rdma;
      side["socket_bytes"] = sock;
      side["frames"] = frames;
      side["plain_bytes"] = plain;
      j[role_name(role)] = side;
    }
  }
  std::string tmp = path + ".tmp." + std::to_string(getpid());
  {
    std::ofstream out(tmp);
    out << j.dump(2) << "\n";
    if (!out) return;
  }
  std::rename(tmp.c_str(), path.c_str());
}

}  // namespace ramshift::qemu::preload
