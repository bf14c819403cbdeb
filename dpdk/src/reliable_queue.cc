#include "reliable_queue.h"

#include <algorithm>
#include <cstring>

namespace ramshift::transport::dpdk {

SendQueue::SendQueue(SendConfig config)
    : config_(config),
      peer_window_(config.initial_window),
      rto_(config.min_rto * 4),
      pacer_(config.congestion) {}

void SendQueue::push_frame(OutFrame f) {
  // Borrowed bytes count too: the buffer bounds what waits for an acknowledgement.
  buffered_bytes_ += f.payload.size() + f.borrowed.size();
  full_ |= buffered_bytes_ >= config_.buffer_bytes;
  f.seq = next_seq_++;
  frames_.push_back(std::move(f));
}

void SendQueue::push_message(std::span<const std::span<const std::byte>> segments) {
  size_t total = 0;
  for (auto s : segments) total += s.size();
  size_t seg = 0, seg_off = 0, done = 0;
  do {
    size_t n = std::min(config_.max_payload, total - done);
    Bytes payload(n);
    for (size_t filled = 0; filled < n;) {
      auto s = segments[seg];
      size_t take = std::min(n - filled, s.size() - seg_off);
      std::memcpy(payload.data() + filled, s.data() + seg_off, take);
      filled += take, seg_off += take;
      if (seg_off == s.size()) ++seg, seg_off = 0;
    }
    OutFrame f;
    f.flags = uint16_t((done == 0 ? kFlagFirst : 0) | (done + n == total ? kFlagLast : 0));
    f.msg_len = done == 0 ? uint32_t(total) : 0;
    f.payload = std::move(payload);
    push_frame(std::move(f));
    done += n;
  } while (done < total);
}

void SendQueue::push_write(std::span<const RemoteWrite> writes) {
  const size_t piece = config_.max_payload - kWriteTargetBytes;
  for (const RemoteWrite& w : writes)
    for (size_t off = 0; off < w.length; off += piece) {
      OutFrame f;
      f.flags = kFlagWrite;
      f.borrowed = {w.local + off, std::min(piece, w.length - off)};
      f.target = {w.remote_address + off, w.rkey};
      push_frame(std::move(f));
    }
}

void SendQueue::push_fin() {
  if (fin_pushed_) return;
  fin_pushed_ = true;
  OutFrame f;
  f.flags = kFlagFin;
  push_frame(std::move(f));
}

std::vector<const OutFrame*> SendQueue::due(Clock::time_point now, size_t max) {
  std::vector<const OutFrame*> out;
  auto admit = [&](const OutFrame& f) {
    return !config_.pacing || pacer_.admit(f.wire_payload() + config_.frame_overhead, now);
  };
  bool timed_out = false;
  bool scan = rescan_ || now >= next_scan_;
  if (scan) rescan_ = false, next_scan_ = now + std::chrono::milliseconds(1);
  for (uint32_t seq = base_; scan && seq != next_unsent_ && out.size() < max; ++seq) {
    OutFrame& f = at(seq);
    if (f.sacked) continue;
    // A hole below a SACKed frame was lost (or is late): resend it once at once rather than
    // wait for the timer; after that the timer governs, so a reordering path does not flood.
    bool hole = seq < highest_sacked_ && f.sends == 1;
    bool expired = now - f.sent_at >= rto_;
    if (!hole && !expired) continue;
    if (!admit(f)) {
      rescan_ = true;  // the rest of the scan when the pacer has tokens again
      break;
    }
    timed_out |= expired && !hole;
    f.sent_at = now;
    ++f.sends;
    ++retransmitted_;
    out.push_back(&f);
  }
  // Exponential backoff, once per round of timeouts, so a dead or congested peer is not
  // hammered; a fresh RTT sample brings it back.
  if (timed_out) {
    rto_ = std::min(rto_ * 2, config_.max_rto);
    pacer_.on_timeout(now);
  }
  uint32_t window_end = base_ + peer_window_;
  while (next_unsent_ != next_seq_ && next_unsent_ < window_end && out.size() < max &&
         admit(at(next_unsent_))) {
    OutFrame& f = at(next_unsent_++);
    f.sent_at = now;
    f.sends = 1;
    out.push_back(&f);
  }
  return out;
}

bool SendQueue::on_ack(const AckBody& ack, Clock::time_point now) {
  if (ack.cumulative > next_unsent_ || ack.cumulative < base_) return false;
  for (const auto& r : ack.sacks)
    if (r.end > next_unsent_) return false;
  // The round trip of the newest frame this ACK covers for the first time. Karn: only a frame
  // sent once gives an unambiguous one. SACKed frames count too, so a loss (whose hole holds
  // the cumulative point back) does not starve the estimate and the congestion controller.
  const OutFrame* newest = nullptr;
  size_t delivered = 0;  // bytes this ACK reports arrived for the first time
  auto consider = [&](const OutFrame& f) {
    if (!f.sacked && f.sends == 1 && (!newest || f.sent_at > newest->sent_at)) newest = &f;
  };
  if (ack.cumulative > base_) consider(at(ack.cumulative - 1));
  for (const auto& r : ack.sacks)
    for (uint32_t seq = std::max(r.begin, base_); seq < r.end; ++seq) {
      consider(at(seq));
      if (!at(seq).sacked) delivered += at(seq).wire_payload() + config_.frame_overhead;
      at(seq).sacked = true;
    }
  if (newest) {
    Clock::duration sample = now - newest->sent_at;
    if (!have_rtt_) {
      srtt_ = sample, rttvar_ = sample / 2, have_rtt_ = true;
    } else {
      Clock::duration err = sample > srtt_ ? sample - srtt_ : srtt_ - sample;
      rttvar_ = (rttvar_ * 3 + err) / 4;
      srtt_ = (srtt_ * 7 + sample) / 8;
    }
    rto_ = std::clamp(srtt_ + 4 * rttvar_, config_.min_rto, config_.max_rto);
    pacer_.on_rtt(sample, now);
  }
  while (base_ != ack.cumulative) {
    const OutFrame& f = frames_.front();
    if (!f.sacked) delivered += f.wire_payload() + config_.frame_overhead;
    buffered_bytes_ -= f.payload.size() + f.borrowed.size();
    full_ &= buffered_bytes_ > config_.buffer_bytes / 2;
    frames_.pop_front();
    ++base_;
  }
  pacer_.on_delivered(delivered);
  peer_window_ = ack.window;
  for (const auto& r : ack.sacks) {
    highest_sacked_ = std::max(highest_sacked_, r.end);
    rescan_ = true;
  }
  return true;
}

ReceiveQueue::ReceiveQueue(uint32_t capacity_frames, size_t max_message, WriteTargets* targets)
    : capacity_(capacity_frames), max_message_(max_message), targets_(targets) {}

uint32_t ReceiveQueue::window() const {
  if (capacity_ > held_frames_) return capacity_ - held_frames_;
  // Full, with only the message being assembled held: it is larger than the window and
  // would never complete. A quarter of the window more lets it (its bytes are bounded by
  // max_message); the window shuts once it is whole, until the caller takes it.
  if (in_message_ && held_frames_ == assembling_frames_) return std::max(capacity_ / 4, 1u);
  return 0;
}

ReceiveQueue::Outcome ReceiveQueue::on_data(const FrameHeader& h,
                                            std::span<const std::byte> payload) {
  if (h.seq < cumulative_ || pending_.contains(h.seq)) return Outcome::kDuplicate;
  if (fin_ || h.seq - cumulative_ >= window()) return Outcome::kOutsideWindow;
  const bool write = (h.flags & kFlagWrite) != 0;
  received_bytes_ += payload.size() - (write ? kWriteTargetBytes : 0);
  if (h.seq != cumulative_) {
    pending_.emplace(h.seq, Held{h.flags, h.msg_len, Bytes(payload.begin(), payload.end())});
    copied_bytes_ += payload.size() - (write ? kWriteTargetBytes : 0);
    return Outcome::kAccepted;
  }
  if (Outcome o = consume_in_order(h.flags, h.msg_len, payload); o != Outcome::kAccepted) return o;
  ++cumulative_;
  // Drain what the frame made in order.
  for (auto it = pending_.begin(); it != pending_.end() && it->first == cumulative_;) {
    const Held& f = it->second;
    if (Outcome o = consume_in_order(f.flags, f.msg_len, f.payload); o != Outcome::kAccepted)
      return o;
    ++cumulative_;
    it = pending_.erase(it);
  }
  return Outcome::kAccepted;
}

ReceiveQueue::Outcome ReceiveQueue::consume_in_order(uint16_t flags, uint32_t msg_len,
                                                     std::span<const std::byte> payload) {
  if ((flags & kFlagFin) != 0) {
    if (in_message_) return Outcome::kBrokenMessage;  // a message cut short by its sender's close
    fin_ = true;
    return Outcome::kAccepted;
  }
  if ((flags & kFlagWrite) != 0) {
    if (in_message_) return Outcome::kBrokenMessage;  // our sender never splits a message
    auto bytes = payload.subspan(kWriteTargetBytes);
    const WriteTarget target = read_write_target(payload);
    if (targets_ == nullptr || !targets_->place(target, bytes)) {
      refused_ = {target, bytes.size()};
      return Outcome::kRefusedWrite;
    }
    copied_bytes_ += bytes.size();
    return Outcome::kAccepted;
  }
  if ((flags & kFlagFirst) != 0) {
    if (in_message_ || msg_len > max_message_) return Outcome::kBrokenMessage;
    in_message_ = true;
    assembling_.clear();
    assembling_.reserve(msg_len);
    assembling_len_ = msg_len;
    assembling_frames_ = 0;
  } else if (!in_message_) {
    return Outcome::kBrokenMessage;
  }
  if (assembling_.size() + payload.size() > assembling_len_) return Outcome::kBrokenMessage;
  assembling_.insert(assembling_.end(), payload.begin(), payload.end());
  copied_bytes_ += payload.size();
  ++assembling_frames_;
  ++held_frames_;
  if ((flags & kFlagLast) != 0) {
    if (assembling_.size() != assembling_len_) return Outcome::kBrokenMessage;
    complete_.push_back({std::move(assembling_), assembling_frames_});
    assembling_ = {};
    in_message_ = false;
  }
  return Outcome::kAccepted;
}

AckBody ReceiveQueue::ack() const {
  AckBody a;
  a.cumulative = cumulative_;
  a.window = window();
  for (const auto& [seq, held] : pending_) {
    if (!a.sacks.empty() && a.sacks.back().end == seq) {
      ++a.sacks.back().end;
    } else {
      if (a.sacks.size() == kMaxSackRanges) break;
      a.sacks.push_back({seq, seq + 1});
    }
  }
  return a;
}

std::vector<Bytes> ReceiveQueue::take(size_t max) {
  std::vector<Bytes> out;
  while (!complete_.empty() && out.size() < max) {
    taken_frames_ += complete_.front().frames;
    out.push_back(std::move(complete_.front().bytes));
    complete_.pop_front();
  }
  return out;
}

}  // namespace ramshift::transport::dpdk
