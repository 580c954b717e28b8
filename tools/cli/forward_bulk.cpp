// oklog forward -bulk: stdin cut into whole segments, sent to ingest nodes on their bulk port
// (rpc/bulk_protocol.h), each kept until an ingester acknowledges it (the stores hold it
// N times). After a failed connection every unacknowledged segment is sent again, in order, to
// the next target; its ULIDs follow from its id, so copies collapse into one record each. An
// ingester that holds a segment sent whole without acknowledging anything for `ack_timeout`
// (its stores are unreachable, or it froze) is left the same way: nothing waits on it for ever.
//
// One thread, poll(2) over stdin and the socket. stdin is read only while fewer than
// `window` segments await their ack, so memory stays within window x segment size.
// With TLS (options.tls) the socket is a ClientConn: sends stay non-blocking (ciphertext the
// socket did not take waits in the connection, and POLLOUT is asked for while it does).
#include "tools/cli/forward_bulk.h"

#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <deque>
#include <thread>

#include "common/log.h"
#include "rpc/frame_codec.h"
#include "rpc/bulk_protocol.h"
#include "tools/cli/client_conn.h"
#include "tools/cli/dial.h"

namespace oklog {
namespace {

using Clock = std::chrono::steady_clock;

class BulkForwarder {
 public:
  BulkForwarder(std::vector<Address> targets, std::string prefix, BulkForwardOptions o)
      : targets_(std::move(targets)), prefix_(std::move(prefix)), o_(o) {}
  ~BulkForwarder() { Disconnect(); }

  int Run() {
    auto log = Logger("forward");
    auto last_report = Clock::now();
    while (!(eof_ && cur_.empty() && segs_.empty())) {
      if (fd_ < 0) Connect();
      pollfd p[2];
      nfds_t n = 0;
      const bool want_input = !eof_ && segs_.size() < o_.window;
      if (want_input) p[n++] = {0, POLLIN, 0};
      const int sock_slot = static_cast<int>(n);
      const bool want_out = send_idx_ < segs_.size() || conn_->has_pending_output();
      p[n++] = {fd_, static_cast<short>(POLLIN | (want_out ? POLLOUT : 0)), 0};
      int timeout = 1000;
      if (send_idx_ > 0) {
        auto left = std::chrono::duration_cast<std::chrono::milliseconds>(ack_wait_since_ + o_.ack_timeout - Clock::now());
        timeout = static_cast<int>(std::clamp<int64_t>(left.count(), 0, timeout));
      }
      if (!cur_.empty()) {
        auto left = std::chrono::duration_cast<std::chrono::milliseconds>(cur_started_ + o_.segment_age - Clock::now());
        timeout = static_cast<int>(std::clamp<int64_t>(left.count(), 0, 1000));
      }
      int r = ::poll(p, n, timeout);
      if (r < 0 && errno != EINTR) return 1;
      if (want_input && (p[0].revents & (POLLIN | POLLHUP | POLLERR))) ReadInput();
      if (!cur_.empty() && (eof_ || cur_.size() >= o_.segment_bytes || Clock::now() - cur_started_ >= o_.segment_age))
        CutSegment();
      if (fd_ >= 0 && (p[sock_slot].revents & (POLLIN | POLLHUP | POLLERR)) && !ReadAcks()) Fail("connection lost");
      if (fd_ >= 0 && (send_idx_ < segs_.size() || conn_->has_pending_output()) && !SendSome()) Fail("write failed");
      if (fd_ >= 0 && send_idx_ > 0 && Clock::now() - ack_wait_since_ >= o_.ack_timeout) {
        Fail("no acknowledgement within -bulk.ack-timeout");
      }
      if (eof_ && segs_.size() > 0 && Clock::now() - last_report > std::chrono::seconds(10)) {
        log->warn("waiting for {} segment(s) to be acknowledged (stored N times)", segs_.size());
        last_report = Clock::now();
      }
    }
    Disconnect();
    return 0;
  }

 private:
  struct Seg {
    Ulid id;
    std::string frame;
  };

  void ReadInput() {
    char buf[1 << 16];
    ssize_t got = ::read(0, buf, sizeof buf);
    if (got < 0 && (errno == EINTR || errno == EAGAIN)) return;
    if (got <= 0) {
      eof_ = true;
      if (!line_.empty()) EndLine();  // the last line, terminated
      return;
    }
    for (ssize_t i = 0; i < got;) {
      const char* start = buf + i;
      const void* lf = std::memchr(start, '\n', static_cast<size_t>(got - i));
      size_t len = lf ? static_cast<size_t>(static_cast<const char*>(lf) - start) : static_cast<size_t>(got - i);
      if (!discarding_) {
        size_t room = o_.segment_bytes - prefix_.size() - 1;
        size_t take = std::min(len, room > line_.size() ? room - line_.size() : 0);
        line_.append(start, take);
        if (take < len) {
          discarding_ = true;  // a line longer than a segment: cut (the ingester cuts far sooner)
          ++cut_lines_;
        }
      }
      i += static_cast<ssize_t>(len);
      if (lf) {
        EndLine();
        ++i;
      }
    }
  }

  void EndLine() {
    if (cur_.empty()) cur_started_ = Clock::now();
    if (cur_.size() + prefix_.size() + line_.size() + 1 > o_.segment_bytes) CutSegment();
    if (cur_.empty()) cur_started_ = Clock::now();
    cur_ += prefix_;
    cur_ += line_;
    cur_ += '\n';
    ++cur_lines_;
    line_.clear();
    if (discarding_) {
      Logger("forward")->warn("cut a line longer than the segment size ({} cut so far)", cut_lines_);
      discarding_ = false;
    }
  }

  void CutSegment() {
    if (cur_.empty()) return;
    Ulid id = ulids_.NextRun(NowUnixMs(), cur_lines_);
    segs_.push_back(Seg{id, rpc::EncodeBulkSegment(id, cur_)});
    cur_.clear();
    cur_lines_ = 0;
  }

  bool SendSome() {
    if (!conn_->FlushPending()) return false;
    while (send_idx_ < segs_.size()) {
      const std::string& f = segs_[send_idx_].frame;
      ssize_t n = conn_->Send(f.data() + send_off_, f.size() - send_off_, MSG_DONTWAIT);
      if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return true;
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) return false;
      send_off_ += static_cast<size_t>(n);
      if (send_off_ == f.size()) {
        if (send_idx_ == 0) ack_wait_since_ = Clock::now();  // the first one awaiting its ack
        ++send_idx_;
        send_off_ = 0;
      }
    }
    return true;
  }

  // Reads what has arrived, and what TLS has already decrypted (poll cannot see that).
  bool ReadAcks() {
    do {
      if (!ReadSomeAcks()) return false;
    } while (conn_ != nullptr && conn_->has_buffered());
    return true;
  }

  bool ReadSomeAcks() {
    char buf[4096];
    ssize_t n = conn_->Recv(buf, sizeof buf, MSG_DONTWAIT);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) return true;
    if (n <= 0) return false;
    (void)frames_.Feed(buf, static_cast<size_t>(n));  // no budget: never refused
    std::string payload;
    for (;;) {
      Result<bool> got = frames_.Next(&payload);
      if (!got.ok()) return false;
      if (!*got) return true;
      Result<rpc::BulkMessage> m = rpc::DecodeBulkMessage(payload);
      if (!m.ok()) return false;
      if (m->kind == rpc::BulkMessage::Kind::kError) {
        Logger("forward")->warn("{} refused: {}", targets_[current_].HostPort(), m->text);
        return false;
      }
      if (m->kind != rpc::BulkMessage::Kind::kAck) return false;
      for (size_t i = 0; i < send_idx_; ++i) {  // only a segment sent whole can be acknowledged
        if (segs_[i].id == m->id) {
          segs_.erase(segs_.begin() + static_cast<std::ptrdiff_t>(i));
          --send_idx_;
          ack_wait_since_ = Clock::now();  // progress: the others get a full timeout again
          break;
        }
      }
    }
  }

  void Fail(const char* why) {
    Logger("forward")->warn("{} on {}; {} unacknowledged segment(s) go to the next ingester", why,
                            targets_[current_].HostPort(), segs_.size());
    Disconnect();
    Next();
  }

  void Connect() {
    for (;;) {
      fd_ = DialWithBackoff(targets_, &current_, &backoff_ms_);
      auto c = ClientConn::Open(fd_, o_.tls, targets_[current_].host, std::chrono::seconds(10));
      if (c.ok()) {
        conn_ = std::move(c).value();
        break;
      }
      fd_ = -1;  // closed by Open
      Logger("forward")->warn("{}: {}; retrying in {} ms", targets_[current_].HostPort(), c.status().message(),
                              backoff_ms_);
      std::this_thread::sleep_for(std::chrono::milliseconds(backoff_ms_));
      backoff_ms_ = std::min(backoff_ms_ * 2, 1024);
      Next();
    }
    frames_ = rpc::FrameDecoder(4096);
    send_idx_ = 0;  // everything unacknowledged goes again, in order
    send_off_ = 0;
    Logger("forward")->info("connected to {} (bulk); {} segment(s) to resend", targets_[current_].HostPort(), segs_.size());
  }

  void Next() { current_ = (current_ + 1) % targets_.size(); }
  void Disconnect() {
    conn_.reset();  // closes fd_
    fd_ = -1;
  }

  std::vector<Address> targets_;
  std::string prefix_;
  BulkForwardOptions o_;
  UlidStream ulids_;
  std::string line_;  // the line being read
  bool discarding_ = false;
  uint64_t cut_lines_ = 0;
  std::string cur_;  // the segment being gathered: whole lines
  uint64_t cur_lines_ = 0;
  Clock::time_point cur_started_;
  bool eof_ = false;
  std::deque<Seg> segs_;  // sent or not, all unacknowledged, in order
  size_t send_idx_ = 0, send_off_ = 0;
  rpc::FrameDecoder frames_{4096};
  size_t current_ = 0;
  std::unique_ptr<ClientConn> conn_;  // owns fd_ while connected
  int fd_ = -1;
  int backoff_ms_ = 16;
  Clock::time_point ack_wait_since_;
};

}  // namespace

int RunBulkForward(std::vector<Address> targets, std::string prefix, BulkForwardOptions options) {
  BulkForwarder f(std::move(targets), std::move(prefix), options);
  return f.Run();
}

}  // namespace oklog
