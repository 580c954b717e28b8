// IngestConn: one accepted ingest connection (fast, durable or bulk): its socket, owned through
// a UvHandle, (reads land in one buffer shared per loop thread), its record encoder and what its modality keeps (a fast
// connection's active segment, a bulk connection's frame decoder). It reads and writes bytes;
// what the bytes mean is the IngestServer's business (the Owner).
//
// TLS (-ingest.tls-*): given a server TlsContext, the connection decrypts what it reads before
// OnData and encrypts what it sends, with a TlsSession between the socket and the Owner, which
// sees plaintext only. A handshake not completed within the context's handshake_timeout, a
// failed one, or a bad record ends the connection (OnEnd); a close_notify is the peer's EOF.
//
// Thread: loop thread only. Lifetime: the Owner holds it (a unique_ptr) and must keep it until
// Owner::OnClosed, which runs from the socket's close callback and may destroy it. Read
// callbacks never run once Close() was called.
#pragma once

#include <uv.h>

#include <cstdint>
#include <memory>
#include <string>

#include "common/crypto/tls_session.h"
#include "common/uv/handle.h"
#include "common/uv/tcp_listener.h"
#include "rpc/frame_codec.h"
#include "segments/ingest_log.h"
#include "segments/record_encoder.h"

namespace oklog {

enum class Modality { kFast, kDurable, kBulk };
inline constexpr int kModalities = 3;
const char* ModalityName(Modality m);

class IngestConn {
 public:
  class Owner {
   public:
    virtual ~Owner() = default;
    // Bytes read; the view is valid during the call.
    virtual void OnData(IngestConn* c, const char* data, size_t n) = 0;
    // EOF or a read error: the owner finishes the connection (Close()).
    virtual void OnEnd(IngestConn* c) = 0;
    // The socket is closed; the owner may destroy c now.
    virtual void OnClosed(IngestConn* c) = 0;
  };

  static constexpr size_t kReadBufferBytes = 256 * 1024;

  // Accepts the connection waiting on listener. Null when accept failed (the socket is closed
  // by itself; nothing to do).
  // tls: null for plain TCP.
  static std::unique_ptr<IngestConn> Accept(uv_loop_t* loop, TcpListener* listener, Owner* owner, uint64_t id,
                                            Modality mod, RecordEncoder encoder,
                                            std::shared_ptr<const crypto::TlsContext> tls = nullptr);
  IngestConn(const IngestConn&) = delete;
  IngestConn& operator=(const IngestConn&) = delete;

  uint64_t id() const { return id_; }
  Modality modality() const { return mod_; }
  bool reading() const { return reading_; }
  bool closing() const { return closing_; }
  // uv_now when bytes last arrived (or the connection was accepted): its idle time.
  uint64_t last_read_ms() const { return last_read_ms_; }

  void StartReading();
  void StopReading();
  // Queues bytes to send (tried at once first, so a small error frame goes out even when the
  // connection closes right after). Nothing once closing.
  void Send(std::string bytes);
  // Half-closes (shutdown(2) after queued writes): the peer sees EOF and reading continues.
  // False when it could not be started (then Close()); true again when already half-closed.
  bool Shutdown();
  // Tells a newline producer to move on. A plain one (no back channel) is half-closed; one with
  // the back channel (segments/ingest_acks.h) is told "leave", then on the fast port
  // half-closed, while a durable one stays open both ways, so its acks still go out, until its
  // producer half-closes. Reading continues. False when it could not be started (then
  // Close()); true again when already told.
  bool HandOver();
  // Durable with the back channel: acknowledges the first `count` bytes read after the request
  // (ingest_acks.h); nothing for a plain connection. Acks are cumulative, so at most one is
  // queued: while one is being written, a later count replaces the waiting one (a client that
  // never reads costs one small buffer, not one per commit).
  void SendAck(uint64_t count);
  // The client's records ended (EOF): closes now, or once the last ack queued is written.
  void CloseAfterAcks();
  // Record bytes read from the socket so far (a back-channel request is not counted).
  uint64_t bytes_read() const { return bytes_read_; }
  uint64_t acked() const { return ack_wanted_; }
  bool acks_requested() const { return channel_ == Channel::kAcks; }
  // Stops reading and closes the socket; Owner::OnClosed follows from the close callback.
  void Close();

  RecordEncoder& encoder() { return enc_; }
  std::unique_ptr<ActiveSegment>& segment() { return seg_; }  // fast connections only
  rpc::FrameDecoder* frames() { return frames_.get(); }        // bulk connections only

 private:
  IngestConn(Owner* owner, uint64_t id, Modality mod, RecordEncoder encoder);
  static void OnAlloc(uv_handle_t* h, size_t, uv_buf_t* buf) noexcept;
  static void OnRead(uv_stream_t* s, ssize_t nread, const uv_buf_t* buf) noexcept;
  static void OnHandshakeTimeout(uv_timer_t* t) noexcept;
  // TLS: ciphertext in, plaintext to the owner.
  void ReadTls(const char* data, size_t n);
  // Writes bytes as they are (ciphertext, or plaintext without TLS).
  void SendRaw(std::string bytes);

  Owner* const owner_;
  const uint64_t id_;
  const Modality mod_;
  UvHandle<uv_tcp_t> tcp_;
  RecordEncoder enc_;
  std::unique_ptr<ActiveSegment> seg_;
  std::unique_ptr<rpc::FrameDecoder> frames_;
  bool reading_ = false;
  bool closing_ = false;
  bool shut_ = false;  // Shutdown() done
  uint64_t last_read_ms_ = 0;
  // Newline ports: whether the client asked for the back channel (ingest_acks.h). Undecided
  // while the first bytes read so far are a prefix of the request; they are held meanwhile.
  enum class Channel { kUndecided, kPlain, kAcks };
  Channel channel_ = Channel::kUndecided;
  size_t request_matched_ = 0;  // bytes of kAckRequest matched (and held) so far
  bool close_after_acks_ = false;
  void Deliver(const char* data, size_t n);
  void OnEof();
  bool told_leave_ = false;  // HandOver() done
  uint64_t bytes_read_ = 0;
  uint64_t ack_wanted_ = 0;   // the latest count to acknowledge
  uint64_t ack_written_ = 0;  // the count of the last ack fully written or queued
  bool ack_in_flight_ = false;
  void WriteAck();
  std::unique_ptr<crypto::TlsSession> tls_;  // null: plain TCP
  UvHandle<uv_timer_t> handshake_timer_;     // TLS only, until the handshake completes
  std::string plain_;                        // TLS: what one read decrypted
  bool eof_pending_ = false;                 // TLS: close_notify read while reading was stopped
};

}  // namespace oklog
