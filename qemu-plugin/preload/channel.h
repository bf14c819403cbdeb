// One multifd channel as the library sees it, on either end. Each is an explicit state
// machine; `interpose.cc` routes a socket's calls here once the socket is known to be a
// candidate (a TCP socket QEMU connected or accepted). Every call runs on the thread QEMU
// makes it on (one multifd thread per channel); the destination's listener thread only
// arms a channel (`arm`, `attach`).
//
// Source:
//   kInit --(64-byte multifd init, stamped)--> kWaitOffer --(OFFER, connected)--> kFramed
//   kInit --(anything else)--> kPlain          kWaitOffer --(no RDMA, zero-copy)--> kPlain
// Destination:
//   kInit --(stamped multifd init, OFFER sent)--> kOffered --(frame at N)--> kFramed
//   kInit --(anything else, no device)--> kPlain  kOffered --(no frame at N)--> kPlain
//   any --(bad frame, failed READ or registration)--> kFailed
#pragma once

#include <sys/socket.h>

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <vector>

#include "page_pull.h"
#include "ramshift/qemu/multifd.h"
#include "runtime.h"
#include "wire.h"

namespace ramshift::qemu::preload {

using transport::rdma::PullOrigin;
using transport::rdma::PullTarget;

// What a channel wants done with the socket after a call.
enum class Verdict { kKeep, kForget };

class SourceChannel {
 public:
  explicit SourceChannel(int fd) : fd_(fd) {}
  // QEMU's sendmsg on the socket. `verdict` says whether the socket stays routed here.
  ssize_t sendmsg(const msghdr* msg, int flags, Verdict& verdict);
  // QEMU is about to close the socket.
  void closing();
  // QEMU closed the socket: the RDMA side stays until the peer says it is done or leaves, at
  // most the peer timeout, on a thread of its own.
  void closed();

 private:
  enum class State { kInit, kWaitOffer, kFramed, kPlain };
  // kPagePacket: header in iov[0], one page per further iovec. kSplitHeader: a header with
  // pages sent alone (zero-copy-send). kOther: anything else.
  enum class Shape { kPagePacket, kSplitHeader, kOther };
  Shape classify(const msghdr* msg, int flags);
  ssize_t send_init(const msghdr* msg, int flags, Verdict& verdict);
  void check_offer();
  void note_no_offer();
  bool is_sync(const msghdr* msg) const;
  ssize_t send_framed(const msghdr* msg, int flags);
  // The start of the mapping that opens [p, p + len) to the destination's READs, exposing it
  // (and sending its key on the READ connection) on first use; null when it cannot be.
  const std::byte* exposed(const std::byte* p, size_t len);
  ssize_t send_all(std::vector<iovec> iov, int flags);

  struct Exposed {
    const std::byte* begin;
    const std::byte* end;
  };
  int fd_;
  State state_ = State::kInit;
  uint64_t sent_ = 0;  // bytes of this channel handed to the kernel
  uint64_t page_packets_ = 0;
  std::shared_ptr<ChannelStats> stats_;
  std::unique_ptr<PullOrigin> origin_;
  std::vector<Exposed> exposed_;
  bool expose_failed_ = false;
  size_t page_size_ = 0;
};

// On a socket a QEMU started with -incoming accepted: opens the RDMA listener for its local
// address in the background, so that the multifd channels' offers need not wait for it
// (QEMU 7.2 reads each multifd init as it accepts the channel, before any page).
void prepare_listener(int fd);

class DestChannel : public std::enable_shared_from_this<DestChannel> {
 public:
  explicit DestChannel(int fd) : fd_(fd) {}
  ssize_t recvmsg(msghdr* msg, int flags, Verdict& verdict);
  void closed();

  // From the listener thread: a connect request named this channel; from stream offset
  // `at` on the source frames. False when the channel no longer expects one.
  bool arm(uint64_t at);
  // From the listener thread: the accepted connection (null when accepting failed).
  void attach(std::unique_ptr<PullTarget> target);

 private:
  enum class State { kInit, kOffered, kFramed, kPlain, kFailed };
  ssize_t recv_init(msghdr* msg, int flags, Verdict& verdict);
  void offer();
  ssize_t recv_offered(msghdr* msg, int flags);
  ssize_t recv_framed(msghdr* msg, int flags);
  // At offset N: a frame (true), QEMU's own bytes (false), or an error (errno set, -1).
  int frame_at_switch();
  ssize_t next_frame();
  ssize_t serve_reads(msghdr* msg);
  ssize_t fail(int err, const std::string& why);
  uint32_t lkey_for(std::byte* p, size_t len);

  struct Registered {
    std::byte* begin;
    std::byte* end;
    uint32_t lkey;
  };
  int fd_;
  State state_ = State::kInit;
  uint64_t delivered_ = 0;  // bytes of this channel handed to QEMU
  std::byte init_[kMultifdInitBytes]{};
  std::shared_ptr<ChannelStats> stats_;
  std::vector<Registered> registered_;
  // The frame being served: its inline bytes still on the socket, then its reads.
  uint64_t inline_left_ = 0;
  std::vector<FrameRead> reads_;
  size_t read_at_ = 0;
  uint64_t read_off_ = 0;

  static constexpr uint64_t kUnknown = ~uint64_t{0};
  std::mutex arm_mu_;
  std::condition_variable arm_cv_;
  std::atomic<uint64_t> switch_at_{kUnknown};
  bool attached_ = false;  // under arm_mu_
  std::unique_ptr<PullTarget> target_;
};

}  // namespace ramshift::qemu::preload
