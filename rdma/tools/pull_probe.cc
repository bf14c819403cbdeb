// rdma_pull_probe: what a key of the QEMU library's READ pulls opens, and for how long
// (docs/security.md, "The QEMU in-process library"), with the library's own connection code
// (rdma/src/page_pull.h) in two processes. Not part of ramshift: a test tool for the soft-RoCE
// VM (tests/softroce/inproc_security.sh).
//
//   rdma_pull_probe IP [--tls-dir DIR | --tls-psk FILE] [--tls-authz IDS] [--windows false]
//
// A child process plays a source QEMU's library: on each "connect" it opens a new READ
// connection to the parent and exposes the same 4 MiB of patterned memory on it, which sends
// the key on that connection; the child tells the parent only the address (as a FRAME would).
// The parent plays a destination that keeps every key it was given, i.e. a process holding a
// guest-memory key from an earlier migration:
//   1  connection 1: a READ with the key it received on it reads the pattern
//   2  connection 2 (the next migration, connection 1 still held): its own key reads the
//      pattern, connection 1's key through it is refused
//   3  connection 3; the source's QEMU closes its channel; the parent holds the connection and
//      never says it is done: after the bound (2 s here) its own key reads nothing: the READ
//      fails (the source left, or the device refused it), it does not wait out its timeout
//   4  connection 4: the parent says it is done: the source ends the exposure at once (well
//      within its 30 s bound), and the key reads nothing from then on
//   5  everything closed, connection 5: connection 1's key through it is refused
// Exit 0 when every READ with a key that should be dead was refused and every READ with a
// live key read the pattern; 1 otherwise; 2 when the set-up failed.
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <map>
#include <string>
#include <type_traits>
#include <vector>

#include "page_pull.h"
#include "ramshift/base/mapped_memory.h"
#include "ramshift/transport/channel_security.h"

using namespace ramshift;
using namespace ramshift::transport::rdma;

namespace {

constexpr size_t kBytes = 4u << 20;
constexpr auto kTimeout = std::chrono::seconds(30);

std::byte pattern(size_t i) { return static_cast<std::byte>((i * 131 + i / 4096) & 0xff); }

bool write_line(int fd, const std::string& s) {
  std::string line = s + "\n";
  return ::write(fd, line.data(), line.size()) == static_cast<ssize_t>(line.size());
}

std::string read_line(int fd) {
  std::string out;
  char c = 0;
  while (::read(fd, &c, 1) == 1 && c != '\n') out += c;
  return out;
}

Result<std::shared_ptr<transport::ChannelSecurity>> security(const transport::BackendSettings& s,
                                                             transport::PeerRole role) {
  return transport::channel_security(s, role);
}

// The source: connects and exposes on command ("connect PORT"), ends a connection's
// exposure as its QEMU's close would ("linger N MS": answers how it ended), until "exit".
int source(const std::string& ip, const transport::BackendSettings& tls, bool windows, int in,
           int out) {
  auto sec = security(tls, transport::PeerRole::kClient);
  if (!sec) {
    write_line(out, "error " + sec.status().message());
    return 2;
  }
  auto mem = MappedMemory::anonymous(kBytes);
  if (!mem) return 2;
  for (size_t i = 0; i < kBytes; ++i) mem->bytes()[i] = pattern(i);
  std::map<int, std::unique_ptr<PullOrigin>> held;
  int next = 1;
  for (;;) {
    std::string cmd = read_line(in);
    if (cmd.rfind("connect ", 0) == 0) {
      std::byte priv[kPullPrivateBytes]{};
      auto port = static_cast<uint16_t>(std::stoi(cmd.substr(8)));
      auto o = PullOrigin::connect(ip, port, priv, kTimeout, sec->get(), windows);
      if (!o) {
        write_line(out, "error " + o.status().message());
        continue;
      }
      auto key = (*o)->expose(mem->bytes());
      if (!key) {
        write_line(out, "error " + key.status().message());
        continue;
      }
      write_line(out, std::to_string(reinterpret_cast<uint64_t>(mem->bytes().data())) + " " +
                          (*o)->describe());
      held[next++] = std::move(*o);
    } else if (cmd.rfind("linger ", 0) == 0) {
      int n = 0, ms = 0;
      std::sscanf(cmd.c_str(), "linger %d %d", &n, &ms);
      auto t0 = std::chrono::steady_clock::now();
      auto end = held[n]->linger(std::chrono::milliseconds(ms));
      auto took = std::chrono::duration_cast<std::chrono::milliseconds>(
                      std::chrono::steady_clock::now() - t0)
                      .count();
      write_line(out, std::string(end == PullOrigin::End::kDone           ? "done"
                                  : end == PullOrigin::End::kDisconnected ? "disconnected"
                                                                          : "bound") +
                          " " + std::to_string(took));
    } else if (cmd == "close") {
      held.clear();  // the earlier migration is over: its connections and registrations go
      write_line(out, "closed");
    } else {
      return 0;
    }
  }
}

struct Granted {
  uint64_t addr = 0;
  uint32_t rkey = 0;
};

int fails = 0;

// One READ of 4 KiB at `offset` with (addr, rkey) through `t` into `local`.
Status read_with(PullTarget& t, std::span<std::byte> local, uint32_t lkey, Granted g,
                 size_t offset) {
  PullRead r{local.data(), lkey, g.addr + offset, g.rkey, 4096};
  return t.read({&r, 1}, std::chrono::seconds(10));
}

bool is_pattern(std::span<const std::byte> got, size_t offset) {
  for (size_t i = 0; i < got.size(); ++i)
    if (got[i] != pattern(offset + i)) return false;
  return true;
}

// Joins text and numbers: the probe's sentences.
template <typename... Parts>
std::string fmt_key(const Parts&... parts) {
  std::string out;
  auto add = [&out](const auto& p) {
    if constexpr (std::is_arithmetic_v<std::decay_t<decltype(p)>>)
      out += std::to_string(p);
    else
      out += p;
  };
  (add(parts), ...);
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr,
                 "usage: rdma_pull_probe IP [--tls-dir DIR | --tls-psk FILE] [--tls-authz IDS] "
                 "[--windows false]\n");
    return 2;
  }
  std::string ip = argv[1];
  transport::BackendSettings tls;
  bool windows = true;
  for (int i = 2; i + 1 < argc; i += 2) {
    std::string name = std::string(argv[i]).substr(2);
    if (name == "windows")
      windows = std::string(argv[i + 1]) != "false";
    else
      tls.set(name, argv[i + 1]);
  }
  int down[2], up[2];
  if (pipe(down) != 0 || pipe(up) != 0) return 2;
  pid_t child = fork();
  if (child == 0) {
    close(down[1]);
    close(up[0]);
    _exit(source(ip, tls, windows, down[0], up[1]));
  }
  close(down[0]);
  close(up[1]);
  auto finish = [&](int rc) {
    write_line(down[1], "exit");
    int st = 0;
    waitpid(child, &st, 0);
    return rc;
  };
  auto sec = security(tls, transport::PeerRole::kServer);
  if (!sec) {
    std::fprintf(stderr, "credentials: %s\n", sec.status().message().c_str());
    return finish(2);
  }
  auto listener = PullListener::create(ip);
  if (!listener) {
    std::fprintf(stderr, "listener: %s\n", listener.status().message().c_str());
    return finish(2);
  }
  auto local = MappedMemory::anonymous(4096);
  if (!local) return finish(2);
  // Asks the source for a new connection; the accepted target, and the address the source
  // named with the key it gave on that connection.
  auto next = [&](std::unique_ptr<PullTarget>& t, Granted& g) -> bool {
    write_line(down[1], "connect " + std::to_string((*listener)->port()));
    auto accept_all = [](std::span<const std::byte>) { return std::string(); };
    for (;;) {
      auto a = (*listener)->accept(kTimeout, accept_all, sec->get());
      if (a) {
        t = std::move(*a);
        break;
      }
      if (a.status().code() != ErrorCode::kWouldBlock) {
        std::fprintf(stderr, "accept: %s\n", a.status().message().c_str());
        return false;
      }
    }
    std::string line = read_line(up[0]);
    char text[512] = {};
    if (std::sscanf(line.c_str(), "%lu %511[^\n]", &g.addr, text) != 2) {
      std::fprintf(stderr, "source: %s\n", line.c_str());
      return false;
    }
    auto key = t->key_for(g.addr, kBytes, std::chrono::seconds(10));
    if (!key) {
      std::fprintf(stderr, "no key on the connection: %s\n", key.status().message().c_str());
      return false;
    }
    g.rkey = *key;
    std::printf(
        "connection: source %s; destination %s; the source's memory at 0x%lx, key %u "
        "(received on the connection)\n",
        text, t->describe().c_str(), g.addr, g.rkey);
    return true;
  };
  auto legit = [&](PullTarget& t, Granted g, const char* what) {
    auto lkey = t.lkey(local->bytes());
    Status st = lkey ? read_with(t, local->bytes(), *lkey, g, 8192) : lkey.status();
    if (st && is_pattern(local->bytes(), 8192)) {
      std::printf("PASS: %s: a READ with this connection's key read the source's memory\n", what);
    } else {
      std::printf("FAIL: %s: a READ with this connection's key: %s\n", what,
                  st ? "wrong bytes" : st.message().c_str());
      ++fails;
    }
  };
  // A READ that must be refused: `key` through `t`. After the source ended the exposure it
  // must fail, not wait out its timeout (the destination's QEMU would wait as long).
  auto refused = [&](PullTarget& t, Granted key, const std::string& what,
                     bool exposure_ended = false) {
    auto lkey = t.lkey(local->bytes());
    std::memset(local->bytes().data(), 0, 4096);
    const auto start = std::chrono::steady_clock::now();
    Status st = lkey ? read_with(t, local->bytes(), *lkey, key, 0) : lkey.status();
    const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                        std::chrono::steady_clock::now() - start)
                        .count();
    if (!st && !is_pattern(local->bytes(), 0) &&
        !(exposure_ended && st.code() == ErrorCode::kTimeout)) {
      std::printf("PASS: %s: refused after %ld ms: %s\n", what.c_str(), static_cast<long>(ms),
                  st.message().c_str());
    } else {
      std::printf("FAIL: %s: %s after %ld ms\n", what.c_str(),
                  st                              ? "read the source's memory"
                  : is_pattern(local->bytes(), 0) ? "left bytes behind"
                                                  : st.message().c_str(),
                  static_cast<long>(ms));
      ++fails;
    }
  };
  auto stale = [&](PullTarget& t, Granted old, Granted now, const char* what) {
    refused(t, old,
            fmt_key(what, ": a READ with the old key ", old.rkey, " (this connection's is ",
                    now.rkey, ")"));
  };
  std::unique_ptr<PullTarget> t1, t2, t3, t4, t5;
  Granted g1, g2, g3, g4, g5;
  if (!next(t1, g1)) return finish(2);
  legit(*t1, g1, "connection 1");
  if (!next(t2, g2)) return finish(2);
  legit(*t2, g2, "connection 2, connection 1 still held");
  stale(*t2, g1, g2, "connection 2, connection 1 still held");

  // 3: the source's QEMU closed the channel; this destination holds on and says nothing.
  if (!next(t3, g3)) return finish(2);
  legit(*t3, g3, "connection 3");
  write_line(down[1], "linger 3 2000");
  std::string ended = read_line(up[0]);
  int ms = 0;
  char how[32] = {};
  if (std::sscanf(ended.c_str(), "%31s %d", how, &ms) == 2 && std::string(how) == "bound" &&
      ms >= 1900 && ms < 10000) {
    std::printf(
        "PASS: connection 3 held, no DONE: the source ended the exposure after %d ms "
        "(bound 2000 ms)\n",
        ms);
  } else {
    std::printf("FAIL: connection 3 held, no DONE: the source's exposure ended '%s'\n",
                ended.c_str());
    ++fails;
  }
  refused(*t3, g3,
          fmt_key("connection 3 held past the bound: a READ with its own key ", g3.rkey, ""), true);

  // 4: the destination says it is done: the exposure ends at once.
  if (!next(t4, g4)) return finish(2);
  legit(*t4, g4, "connection 4");
  write_line(down[1], "linger 4 30000");
  Status d = t4->done(std::chrono::seconds(5));
  ended = read_line(up[0]);
  if (d && std::sscanf(ended.c_str(), "%31s %d", how, &ms) == 2 && std::string(how) == "done" &&
      ms < 5000) {
    std::printf(
        "PASS: connection 4: DONE ended the source's exposure after %d ms (bound 30000 "
        "ms)\n",
        ms);
  } else {
    std::printf("FAIL: connection 4: DONE (%s): the source's exposure ended '%s'\n",
                d ? "sent" : d.message().c_str(), ended.c_str());
    ++fails;
  }
  refused(*t4, g4, fmt_key("connection 4 after its DONE: a READ with its own key ", g4.rkey, ""),
          true);

  write_line(down[1], "close");
  if (read_line(up[0]) != "closed") return finish(2);
  t1.reset();
  t2.reset();
  t3.reset();
  t4.reset();
  if (!next(t5, g5)) return finish(2);
  legit(*t5, g5, "connection 5, after 1 to 4 closed");
  stale(*t5, g1, g5, "connection 5, after 1 to 4 closed");
  return finish(fails == 0 ? 0 : 1);
}
