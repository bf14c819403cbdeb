// rdma_pull_probe: whether a key of the QEMU library's READ pulls outlives its connection
// (docs/security.md, "The QEMU in-process library"), with the library's own connection code
// (rdma/src/page_pull.h) in two processes. Not part of ramshift: a test tool for the soft-RoCE
// VM (tests/softroce/inproc_security.sh).
//
//   rdma_pull_probe IP [--tls-dir DIR | --tls-psk FILE] [--tls-authz IDS]
//
// A child process plays a source QEMU's library: on each "connect" it opens a new READ
// connection to the parent and exposes the same 4 MiB of patterned memory on it, telling the
// parent (as a FRAME would) the address and rkey. The parent plays a destination that keeps
// what it was told, i.e. a process holding a guest-memory key from an earlier migration:
//   1  connection 1: a READ with its own key reads the pattern; the parent keeps connection 1
//   2  connection 2 (the next migration, connection 1 still held): a READ with its own key
//      reads the pattern, then a READ with connection 1's key must fail
//   3  both closed (the earlier migration over), connection 3: the same
// Exit 0 when every READ with an old key was refused and every READ with the current key read
// the pattern; 1 otherwise; 2 when the set-up failed.
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <string>
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

// The source: connects and exposes on command, until "exit".
int source(const std::string& ip, const transport::BackendSettings& tls, int in, int out) {
  auto sec = security(tls, transport::PeerRole::kClient);
  if (!sec) {
    write_line(out, "error " + sec.status().message());
    return 2;
  }
  auto mem = MappedMemory::anonymous(kBytes);
  if (!mem) return 2;
  for (size_t i = 0; i < kBytes; ++i) mem->bytes()[i] = pattern(i);
  std::vector<std::unique_ptr<PullOrigin>> held;
  for (;;) {
    std::string cmd = read_line(in);
    if (cmd.rfind("connect ", 0) == 0) {
      std::byte priv[kPullPrivateBytes]{};
      auto port = static_cast<uint16_t>(std::stoi(cmd.substr(8)));
      auto o = PullOrigin::connect(ip, port, priv, kTimeout, sec->get());
      if (!o) {
        write_line(out, "error " + o.status().message());
        continue;
      }
      auto rkey = (*o)->expose(mem->bytes());
      if (!rkey) {
        write_line(out, "error " + rkey.status().message());
        continue;
      }
      write_line(out, std::to_string(reinterpret_cast<uint64_t>(mem->bytes().data())) + " " +
                          std::to_string(*rkey));
      held.push_back(std::move(*o));
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

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr,
                 "usage: rdma_pull_probe IP [--tls-dir DIR | --tls-psk FILE] [--tls-authz IDS]\n");
    return 2;
  }
  std::string ip = argv[1];
  transport::BackendSettings tls;
  for (int i = 2; i + 1 < argc; i += 2) tls.set(std::string(argv[i]).substr(2), argv[i + 1]);
  int down[2], up[2];
  if (pipe(down) != 0 || pipe(up) != 0) return 2;
  pid_t child = fork();
  if (child == 0) {
    close(down[1]);
    close(up[0]);
    _exit(source(ip, tls, down[0], up[1]));
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
  // Asks the source for a new connection; the accepted target and what the source told.
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
    if (std::sscanf(line.c_str(), "%lu %u", &g.addr, &g.rkey) != 2) {
      std::fprintf(stderr, "source: %s\n", line.c_str());
      return false;
    }
    std::printf("connection: %s, the source's memory at 0x%lx, rkey %u\n", t->describe().c_str(),
                g.addr, g.rkey);
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
  auto stale = [&](PullTarget& t, Granted old, Granted now, const char* what) {
    auto lkey = t.lkey(local->bytes());
    std::memset(local->bytes().data(), 0, 4096);
    Status st = lkey ? read_with(t, local->bytes(), *lkey, old, 0) : lkey.status();
    if (!st && !is_pattern(local->bytes(), 0)) {
      std::printf(
          "PASS: %s: a READ with the old key %u (this connection's is %u) was refused: %s\n", what,
          old.rkey, now.rkey, st.message().c_str());
    } else {
      std::printf("FAIL: %s: a READ with the old key %u (this connection's is %u) %s\n", what,
                  old.rkey, now.rkey, st ? "read the source's memory" : "left bytes behind");
      ++fails;
    }
  };
  std::unique_ptr<PullTarget> t1, t2, t3;
  Granted g1, g2, g3;
  if (!next(t1, g1)) return finish(2);
  legit(*t1, g1, "connection 1");
  if (!next(t2, g2)) return finish(2);
  legit(*t2, g2, "connection 2, connection 1 still held");
  stale(*t2, g1, g2, "connection 2, connection 1 still held");
  write_line(down[1], "close");
  if (read_line(up[0]) != "closed") return finish(2);
  t1.reset();
  t2.reset();
  if (!next(t3, g3)) return finish(2);
  legit(*t3, g3, "connection 3, after 1 and 2 closed");
  stale(*t3, g1, g3, "connection 3, after 1 and 2 closed");
  return finish(fails == 0 ? 0 : 1);
}
