// RpcServer and RpcClient over real loopback sockets in one loop, plus raw sockets sending
// garbage from a helper thread.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <functional>
#include <optional>
#include <vector>
#include <thread>

#include "common/crypto/keyring.h"
#include "common/crypto/seal.h"
#include "common/metrics.h"
#include "common/unique_fd.h"
#include "rpc/frame_codec.h"
#include "rpc/rpc.h"
#include "rpc/rpc_client.h"
#include "rpc/rpc_server.h"
#include "loop_util.h"
#include "test_util.h"

namespace oklog::rpc {
namespace {

class RpcTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_EQ(uv_loop_init(&loop_), 0);
    server_ = RpcServer::Create(&loop_, {"test", "server"}, &metrics_);
    ASSERT_TRUE(server_->Listen("127.0.0.1:0").ok());
    addr_ = "127.0.0.1:" + std::to_string(server_->port());
    client_ = RpcClient::Create(&loop_, {"test", "client"}, &metrics_);
    server_->Handle("echo", [](std::shared_ptr<ServerCall> c) { c->Respond(Status::Ok(), c->body()); });
  }
  void TearDown() override {
    client_->Close();
    server_->Close();
    RunUntil([&] { return server_->done(); }, 2000);
    client_.reset();
    server_.reset();
    uv_run(&loop_, UV_RUN_DEFAULT);
    EXPECT_EQ(uv_loop_close(&loop_), 0);
  }

  bool RunUntil(const std::function<bool()>& pred, int timeout_ms) {
    return RunLoopUntil(&loop_, pred, timeout_ms, 5);
  }

  // Calls and waits; the result, or the status.
  Result<std::string> CallSync(RpcClient* client, const std::string& method, std::string body,
                               Duration timeout = Duration(2000)) {
    std::optional<Result<std::string>> out;
    client->Call(addr_, method, std::move(body), timeout, [&](Result<std::string> r) { out = std::move(r); });
    EXPECT_TRUE(RunUntil([&] { return out.has_value(); }, 5000));
    if (!out) return Status::TimedOut("test");
    return std::move(*out);
  }

  // Sends bytes on a raw socket from another thread; returns once the server closed it.
  void SendRaw(std::string bytes) {
    std::atomic<bool> closed{false};
    std::thread t([&] {
      SendAndDrain(server_->port(), bytes);
      closed = true;
    });
    EXPECT_TRUE(RunUntil([&] { return closed.load(); }, 6000));
    t.join();
  }

  // The server side of a streaming method: `parts` parts of `part_bytes` bytes of `fill`, sent as
  // fast as the window lets them, then End(OK). Lives as long as the test that serves it.
  struct Producer {
    size_t part_bytes = 0, parts = 0, produced = 0;
    char fill = 'p';
    bool cancelled = false;
    std::shared_ptr<ServerCall> call;
    void Produce() {
      while (call->writable() && produced < parts) {
        call->Send(std::string(part_bytes, fill));
        ++produced;
      }
      if (produced == parts) call->End(Status::Ok());
    }
  };
  void Serve(const std::string& method, Producer* p) {
    server_->Handle(method, [p](std::shared_ptr<ServerCall> c) {
      p->call = c;
      c->OnCancel([p] { p->cancelled = true; });
      c->OnWritable([p] { p->Produce(); });
      p->Produce();
    });
  }

  double Metric(const std::string& line_prefix) {
    std::string text = "\n" + metrics_.Render();
    size_t p = text.find("\n" + line_prefix + " ");  // a sample line, not "# HELP name ..."
    if (p == std::string::npos) return 0;
    return std::stod(text.substr(p + line_prefix.size() + 2));
  }

  uv_loop_t loop_;
  Registry metrics_;
  std::unique_ptr<RpcServer> server_;
  std::unique_ptr<RpcClient> client_;
  std::string addr_;
};

TEST_F(RpcTest, UnaryCallRoundTrips) {
  Result<std::string> r = CallSync(client_.get(), "echo", "hello");
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(*r, "hello");
  EXPECT_EQ(client_->connections(), 1u);
}

TEST_F(RpcTest, ConcurrentCallsShareOneConnection) {
  int done = 0;
  for (int i = 0; i < 50; ++i)
    client_->Call(addr_, "echo", std::to_string(i), Duration(2000), [&, i](Result<std::string> r) {
      ASSERT_TRUE(r.ok());
      EXPECT_EQ(*r, std::to_string(i));
      ++done;
    });
  ASSERT_TRUE(RunUntil([&] { return done == 50; }, 5000));
  EXPECT_EQ(client_->connections(), 1u);
  EXPECT_EQ(server_->connections(), 1u);
}

TEST_F(RpcTest, LargeBodiesTravelInChunksBothWays) {
  std::string big(5 * kRpcChunkBytes + 123, 'x');
  for (size_t i = 0; i < big.size(); i += 4096) big[i] = static_cast<char>('a' + i % 26);
  Result<std::string> r = CallSync(client_.get(), "echo", big);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(*r, big);
}

TEST_F(RpcTest, UnknownMethodIsNotFound) {
  Result<std::string> r = CallSync(client_.get(), "nope", "");
  EXPECT_EQ(r.status().code(), Code::kNotFound);
}

TEST_F(RpcTest, HandlerErrorReachesTheCaller) {
  server_->Handle("fail", [](std::shared_ptr<ServerCall> c) { c->Respond(Status::Unavailable("not now")); });
  Result<std::string> r = CallSync(client_.get(), "fail", "");
  EXPECT_EQ(r.status().code(), Code::kUnavailable);
  EXPECT_EQ(r.status().message(), "not now");
}

TEST_F(RpcTest, DeadlinePassesAndTheServerHearsTheCancel) {
  std::shared_ptr<ServerCall> held;
  bool cancelled = false;
  server_->Handle("hang", [&](std::shared_ptr<ServerCall> c) {
    c->OnCancel([&] { cancelled = true; });
    held = c;
  });
  auto start = std::chrono::steady_clock::now();
  Result<std::string> r = CallSync(client_.get(), "hang", "", Duration(100));
  EXPECT_EQ(r.status().code(), Code::kTimedOut);
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(2));
  EXPECT_TRUE(RunUntil([&] { return cancelled; }, 2000));
  held->Respond(Status::Ok(), "late");  // inert
  // The connection still serves.
  EXPECT_TRUE(CallSync(client_.get(), "echo", "x").ok());
}

TEST_F(RpcTest, ServerStreamStopsAtTheWindowUntilTheClientConsumes) {
  const size_t kPart = 256 << 10;
  const size_t kTotal = 40;  // 10 MiB: more than two windows
  Producer tail{kPart, kTotal};
  Serve("tail", &tail);
  size_t received = 0;
  std::optional<Status> end;
  RpcClient::StreamOptions so;
  so.credit = RpcClient::Credit::kManual;
  uint64_t h = client_->Stream(addr_, "tail", "", so,
                               {[&](std::string part) { received += part.size(); },
                                [&](const Status& s) { end = s; }});
  ASSERT_NE(h, 0u);
  RunUntil([] { return false; }, 300);
  // Nothing consumed: the server holds at one window.
  EXPECT_LE(received, kRpcStreamWindowBytes);
  EXPECT_LE(tail.produced * kPart, 2 * kRpcStreamWindowBytes);
  EXPECT_FALSE(end.has_value());
  size_t consumed = 0;
  ASSERT_TRUE(RunUntil([&] {
    if (received > consumed) {
      client_->Consume(h, received - consumed);
      consumed = received;
    }
    return end.has_value();
  }, 10000));
  EXPECT_TRUE(end->ok()) << end->ToString();
  EXPECT_EQ(received, kPart * kTotal);
}

TEST_F(RpcTest, CancelledStreamStopsTheProducer) {
  bool cancelled = false;
  std::shared_ptr<ServerCall> call;
  server_->Handle("tail", [&](std::shared_ptr<ServerCall> c) {
    call = c;
    c->OnCancel([&] { cancelled = true; });
    c->Send("first");
  });
  std::optional<Status> end;
  uint64_t h = 0;
  h = client_->Stream(addr_, "tail", "", {}, {[&](std::string) { client_->Cancel(h); }, [&](const Status& s) { end = s; }});
  ASSERT_TRUE(RunUntil([&] { return end.has_value() && cancelled; }, 3000));
  EXPECT_EQ(end->code(), Code::kCancelled);
  EXPECT_FALSE(call->Send("more"));
}

TEST_F(RpcTest, WrongClusterIsDroppedAndCounted) {
  auto other = RpcClient::Create(&loop_, {"other", "intruder"}, nullptr);
  Result<std::string> r = CallSync(other.get(), "echo", "x");
  EXPECT_FALSE(r.ok());
  EXPECT_EQ(Metric("oklog_rpc_streams_dropped_total{reason=\"wrong_cluster\"}"), 1);
  EXPECT_TRUE(CallSync(client_.get(), "echo", "x").ok());
  other->Close();
}

TEST_F(RpcTest, GarbageAndOversizeFramesAreDroppedAndCounted) {
  SendRaw("GET / HTTP/1.1\r\nHost: x\r\n\r\n");  // a length of ~1.2 GB: oversize
  EXPECT_EQ(Metric("oklog_rpc_streams_dropped_total{reason=\"oversize\"}"), 1);
  SendRaw(EncodeFrame("\xc1\xc1 not msgpack"));
  EXPECT_EQ(Metric("oklog_rpc_streams_dropped_total{reason=\"malformed\"}"), 1);
  // A good hello, then an envelope that does not decode.
  SendRaw(EncodeFrame(EncodeHello({kClusterProtocolVersion, "test", "raw"})) + EncodeFrame("\x93\x01\x02\x03"));
  EXPECT_EQ(Metric("oklog_rpc_streams_dropped_total{reason=\"malformed\"}"), 2);
  // A frame header announcing more than the limit after a good hello.
  std::string huge = EncodeFrame(EncodeHello({kClusterProtocolVersion, "test", "raw"}));
  huge += std::string("\x01\x00\x00\x01", 4);  // 16 MiB + 1
  SendRaw(huge);
  EXPECT_EQ(Metric("oklog_rpc_streams_dropped_total{reason=\"oversize\"}"), 2);
  EXPECT_TRUE(CallSync(client_.get(), "echo", "still here").ok());
}

TEST_F(RpcTest, ClientReconnectsAfterTheServerRestarts) {
  ASSERT_TRUE(CallSync(client_.get(), "echo", "1").ok());
  const uint16_t port = server_->port();
  server_->Close();
  RunUntil([&] { return server_->done(); }, 2000);
  Result<std::string> r = CallSync(client_.get(), "echo", "2");
  EXPECT_FALSE(r.ok());
  server_ = RpcServer::Create(&loop_, {"test", "server"}, &metrics_);
  ASSERT_TRUE(server_->Listen("127.0.0.1:" + std::to_string(port)).ok());
  server_->Handle("echo", [](std::shared_ptr<ServerCall> c) { c->Respond(Status::Ok(), c->body()); });
  bool ok = false;
  ASSERT_TRUE(RunUntil([&] {
    Result<std::string> again = CallSync(client_.get(), "echo", "3");
    ok = again.ok();
    return ok;
  }, 3000));
}

TEST_F(RpcTest, ConnectionRefusedFailsFast) {
  auto s = RpcServer::Create(&loop_, {"test", "tmp"}, nullptr);
  ASSERT_TRUE(s->Listen("127.0.0.1:0").ok());
  std::string dead = "127.0.0.1:" + std::to_string(s->port());
  s->Close();
  RunUntil([&] { return s->done(); }, 2000);
  std::optional<Result<std::string>> out;
  client_->Call(dead, "echo", "", Duration(5000), [&](Result<std::string> r) { out = std::move(r); });
  ASSERT_TRUE(RunUntil([&] { return out.has_value(); }, 2000));
  EXPECT_EQ(out->status().code(), Code::kUnavailable);
}

}  // namespace
}  // namespace oklog::rpc

namespace oklog::rpc {
namespace {

// A port whose kernel completes connections but whose process never reads or answers: what a
// SIGSTOPped or cut-off peer looks like from a client.
struct FrozenPeer {
  UniqueFd fd;
  std::string addr;
  FrozenPeer() : fd(socket(AF_INET, SOCK_STREAM, 0)) {
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    EXPECT_EQ(bind(fd.get(), reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
    EXPECT_EQ(listen(fd.get(), 16), 0);
    socklen_t len = sizeof a;
    EXPECT_EQ(getsockname(fd.get(), reinterpret_cast<sockaddr*>(&a), &len), 0);
    addr = "127.0.0.1:" + std::to_string(ntohs(a.sin_port));
  }
};

TEST_F(RpcTest, ATimedOutCallOnAConnectionWithNoLifeClosesItAfterAFailedPing) {
  client_.reset();
  client_ = RpcClient::Create(&loop_, {"test", "client", Duration(200), Duration(300)}, &metrics_);
  FrozenPeer frozen;
  // Two calls wait on the frozen peer; the short one times out, the ping goes unanswered, and
  // the connection closes: the long one ends too, long before its own 60 s deadline.
  std::optional<Result<std::string>> shorter, longer;
  client_->Call(frozen.addr, "echo", "a", Duration(200), [&](Result<std::string> r) { shorter = std::move(r); });
  client_->Call(frozen.addr, "echo", "b", Duration(60000), [&](Result<std::string> r) { longer = std::move(r); });
  ASSERT_TRUE(RunUntil([&] { return shorter.has_value() && longer.has_value(); }, 10000));
  EXPECT_EQ(shorter->status().code(), Code::kTimedOut);
  EXPECT_EQ(longer->status().code(), Code::kUnavailable) << longer->status().ToString();
  EXPECT_NE(longer->status().message().find("no life"), std::string::npos) << longer->status().ToString();
  EXPECT_EQ(client_->connections(), 0u);
  EXPECT_EQ(Metric("oklog_rpc_connections_closed_total{reason=\"no_life\"}"), 1);
}

TEST_F(RpcTest, ATimedOutCallOnALiveButSlowPeerKeepsTheConnection) {
  client_.reset();
  client_ = RpcClient::Create(&loop_, {"test", "client", Duration(200), Duration(2000)}, &metrics_);
  std::shared_ptr<ServerCall> held;
  server_->Handle("slow", [&](std::shared_ptr<ServerCall> c) { held = c; });  // answers never
  // The connection is up first, so nothing arrives on it while the slow call waits: the
  // timeout is followed by a ping (counted as a call), which the live server answers.
  ASSERT_TRUE(CallSync(client_.get(), "echo", "warm").ok());
  Result<std::string> r = CallSync(client_.get(), "slow", "", Duration(100));
  EXPECT_EQ(r.status().code(), Code::kTimedOut);
  // The server answers the ping: the connection stays and serves the next call.
  ASSERT_TRUE(RunUntil([&] { return Metric("oklog_rpc_calls_total") >= 3 && Metric("oklog_rpc_call_errors_total") == 1; }, 5000))
      << metrics_.Render();
  Result<std::string> again = CallSync(client_.get(), "echo", "still here");
  ASSERT_TRUE(again.ok()) << again.status().ToString();
  EXPECT_EQ(client_->connections(), 1u);
  EXPECT_EQ(server_->connections(), 1u);
  EXPECT_EQ(Metric("oklog_rpc_connections_closed_total{reason=\"no_life\"}"), 0);
}

TEST_F(RpcTest, DisconnectEndsEveryCallOnThePeerAndTheNextCallReconnects) {
  std::vector<std::shared_ptr<ServerCall>> held;
  server_->Handle("hang", [&](std::shared_ptr<ServerCall> c) { held.push_back(c); });
  std::vector<Result<std::string>> ended;
  for (int i = 0; i < 3; ++i)
    client_->Call(addr_, "hang", "", Duration(60000), [&](Result<std::string> r) { ended.push_back(std::move(r)); });
  ASSERT_TRUE(RunUntil([&] { return held.size() == 3; }, 5000));
  client_->Disconnect(addr_, "peer is suspect");
  ASSERT_EQ(ended.size(), 3u) << "the calls end at once, on the loop";
  for (const auto& r : ended) {
    EXPECT_EQ(r.status().code(), Code::kUnavailable);
    EXPECT_NE(r.status().message().find("peer is suspect"), std::string::npos) << r.status().ToString();
  }
  EXPECT_EQ(client_->connections(), 0u);
  EXPECT_EQ(Metric("oklog_rpc_connections_closed_total{reason=\"peer_down\"}"), 1);
  client_->Disconnect("127.0.0.1:1", "never connected");  // no connection: nothing happens
  EXPECT_EQ(Metric("oklog_rpc_connections_closed_total{reason=\"peer_down\"}"), 1);
  Result<std::string> r = CallSync(client_.get(), "echo", "again");
  ASSERT_TRUE(r.ok()) << r.status().ToString();
}

TEST_F(RpcTest, AStreamWithoutAFirstPartInTimeEndsTimedOutButASilentOneAfterItsFirstPartDoesNot) {
  std::vector<std::shared_ptr<ServerCall>> held;
  server_->Handle("silent", [&](std::shared_ptr<ServerCall> c) { held.push_back(c); });
  server_->Handle("one-part", [&](std::shared_ptr<ServerCall> c) {
    c->Send("first");
    held.push_back(c);
  });
  RpcClient::StreamOptions so;
  so.timeout = Duration(60000);
  so.first_part_timeout = Duration(200);
  std::optional<Status> silent_end, one_end;
  int parts = 0;
  client_->Stream(addr_, "silent", "", so, {[](std::string) {}, [&](const Status& s) { silent_end = s; }});
  uint64_t h = client_->Stream(addr_, "one-part", "", so,
                               {[&](std::string) { ++parts; }, [&](const Status& s) { one_end = s; }});
  ASSERT_TRUE(RunUntil([&] { return silent_end.has_value(); }, 5000));
  EXPECT_EQ(silent_end->code(), Code::kTimedOut);
  EXPECT_NE(silent_end->message().find("no answer within 200 ms"), std::string::npos) << silent_end->ToString();
  // Well past the first-part bound, the stream that answered is still open.
  RunUntil([] { return false; }, 600);
  EXPECT_EQ(parts, 1);
  EXPECT_FALSE(one_end.has_value());
  client_->Cancel(h);
  ASSERT_TRUE(one_end.has_value());
  EXPECT_EQ(one_end->code(), Code::kCancelled);
}

// ---- bounds on what a peer's answer may make us hold ----

// Writes all of bytes; false once the peer is gone (no SIGPIPE).
bool SendFully(int fd, const std::string& bytes) {
  for (size_t off = 0; off < bytes.size();) {
    ssize_t n = ::send(fd, bytes.data() + off, bytes.size() - off, MSG_NOSIGNAL);
    if (n <= 0) return false;
    off += static_cast<size_t>(n);
  }
  return true;
}

// A fake store speaking the framing by hand on its own thread: it accepts one connection,
// reads the client's hello and first request, sends its hello, then answers that request with
// kRpcChunkBytes chunks as fast as TCP takes them, ignoring every credit, until the client
// closes the connection or cap_bytes went out. (The store of issue 11 streamed 1 GiB so.)
class CreditIgnoringPeer {
 public:
  explicit CreditIgnoringPeer(uint64_t cap_bytes) : listen_(socket(AF_INET, SOCK_STREAM, 0)) {
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    EXPECT_EQ(bind(listen_.get(), reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
    EXPECT_EQ(listen(listen_.get(), 4), 0);
    socklen_t len = sizeof a;
    EXPECT_EQ(getsockname(listen_.get(), reinterpret_cast<sockaddr*>(&a), &len), 0);
    addr_ = "127.0.0.1:" + std::to_string(ntohs(a.sin_port));
    thread_ = std::thread([this, cap_bytes] {
      Serve(cap_bytes);
      done_ = true;
    });
  }
  ~CreditIgnoringPeer() { thread_.join(); }

  const std::string& addr() const { return addr_; }
  uint64_t sent_bytes() const { return sent_; }
  bool done() const { return done_; }

 private:
  void Serve(uint64_t cap_bytes) {
    pollfd p{listen_.get(), POLLIN, 0};
    if (poll(&p, 1, 10000) != 1) return;
    UniqueFd c(accept(listen_.get(), nullptr, nullptr));
    if (c.get() < 0) return;
    timeval tv{10, 0};  // a test gone wrong must not hang here
    setsockopt(c.get(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(c.get(), SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    FrameDecoder frames;
    std::vector<std::string> got;  // the client's hello, then its request
    char buf[4096];
    while (got.size() < 2) {
      std::string f;
      Result<bool> next = frames.Next(&f);
      if (!next.ok()) return;
      if (*next) {
        got.push_back(std::move(f));
        continue;
      }
      ssize_t n = ::read(c.get(), buf, sizeof buf);
      if (n <= 0) return;
      EXPECT_TRUE(frames.Feed(buf, static_cast<size_t>(n)));
    }
    Result<Envelope> request = DecodeEnvelope(got[1]);
    if (!request.ok() || request->kind != Envelope::Kind::kRequest) return;
    if (!SendFully(c.get(), EncodeFrame(EncodeHello({kClusterProtocolVersion, "test", "liar"})))) return;
    const std::string chunk = EncodeFrame(EncodeEnvelope(
        {Envelope::Kind::kChunk, request->request_id, "", 0, std::string(kRpcChunkBytes, 'r')}));
    while (sent_ < cap_bytes && SendFully(c.get(), chunk)) sent_ += kRpcChunkBytes;
  }

  UniqueFd listen_;
  std::string addr_;
  std::atomic<uint64_t> sent_{0};
  std::atomic<bool> done_{false};
  std::thread thread_;
};

TEST_F(RpcTest, AServerIgnoringCreditsIsCutOffAtTheWindowAndOtherPeersStreamsGoOn) {
  const uint64_t kCap = uint64_t{256} << 20;
  CreditIgnoringPeer liar(kCap);
  // An honest stream of 10 MiB from another server, running alongside.
  const size_t kPart = 256 << 10, kParts = 40;
  Producer honest{kPart, kParts, 0, 'h'};
  Serve("tail", &honest);
  size_t honest_bytes = 0;
  std::optional<Status> honest_end;
  client_->Stream(addr_, "tail", "", {}, {[&](std::string p) { honest_bytes += p.size(); },
                                          [&](const Status& s) { honest_end = s; }});
  // The caller holds everything (kManual, never consumed), as the query fan-out may.
  RpcClient::StreamOptions so;
  so.credit = RpcClient::Credit::kManual;
  size_t held = 0;
  std::optional<Status> liar_end;
  client_->Stream(liar.addr(), "query.run", "", so, {[&](std::string p) { held += p.size(); },
                                                      [&](const Status& s) { liar_end = s; }});
  // A second call to the same peer shares its connection, and its fate.
  std::optional<Result<std::string>> liar_unary;
  client_->Call(liar.addr(), "echo", "x", Duration(10000), [&](Result<std::string> r) { liar_unary = std::move(r); });
  ASSERT_TRUE(RunUntil([&] { return liar_end && liar_unary && honest_end && liar.done(); }, 10000));
  EXPECT_EQ(liar_end->code(), Code::kCorruption) << liar_end->ToString();
  EXPECT_NE(liar_end->message().find("over the credit window"), std::string::npos) << liar_end->ToString();
  EXPECT_NE(liar_end->message().find(liar.addr()), std::string::npos) << liar_end->ToString();
  // What the caller was handed never exceeds the window it credited (nothing).
  EXPECT_LE(held, kRpcStreamWindowBytes);
  EXPECT_GE(held, kRpcStreamWindowBytes - kRpcChunkBytes);
  EXPECT_EQ(liar_unary->status().code(), Code::kUnavailable) << liar_unary->status().ToString();
  EXPECT_LT(liar.sent_bytes(), kCap);  // cut off, not drained
  EXPECT_EQ(Metric("oklog_rpc_streams_dropped_total{reason=\"window\"}"), 1);
  ASSERT_TRUE(honest_end->ok()) << honest_end->ToString();
  EXPECT_EQ(honest_bytes, kPart * kParts);
  EXPECT_EQ(client_->connections(), 1u);  // the honest server's
  EXPECT_TRUE(CallSync(client_.get(), "echo", "still here").ok());
}

TEST_F(RpcTest, AStreamOverItsMaxBytesEndsResourceExhaustedAndTheServerHearsTheCancel) {
  const size_t kPart = 256 << 10;
  Producer tail{kPart, 40};
  Serve("tail", &tail);
  RpcClient::StreamOptions so;
  so.max_bytes = 3 * kPart + 100;
  size_t received = 0;
  std::optional<Status> end;
  client_->Stream(addr_, "tail", "", so, {[&](std::string p) { received += p.size(); },
                                          [&](const Status& s) { end = s; }});
  ASSERT_TRUE(RunUntil([&] { return end.has_value() && tail.cancelled; }, 5000));
  EXPECT_EQ(end->code(), Code::kResourceExhausted) << end->ToString();
  EXPECT_EQ(received, 3 * kPart);  // the part that would pass the bound is not delivered
  EXPECT_FALSE(tail.call->Send("more"));
  EXPECT_EQ(Metric("oklog_rpc_streams_dropped_total{reason=\"window\"}"), 0);
  EXPECT_TRUE(CallSync(client_.get(), "echo", "the connection stays").ok());
}

TEST_F(RpcTest, AUnaryAnswerOverTheMessageLimitEndsResourceExhausted) {
  bool cancelled = false;
  server_->Handle("huge", [&](std::shared_ptr<ServerCall> c) {
    c->OnCancel([&] { cancelled = true; });
    // Two windows over: the server still holds some when the client gives up, so it hears it.
    c->Respond(Status::Ok(), std::string(kRpcMaxMessageBytes + 2 * kRpcStreamWindowBytes, 'u'));
  });
  Result<std::string> r = CallSync(client_.get(), "huge", "", Duration(10000));
  EXPECT_EQ(r.status().code(), Code::kResourceExhausted) << r.status().ToString();
  EXPECT_TRUE(RunUntil([&] { return cancelled; }, 5000));
  EXPECT_TRUE(CallSync(client_.get(), "echo", "x").ok());
}

TEST_F(RpcTest, ARequestInPartsPastTheMessageLimitClosesThatConnectionOnly) {
  std::string raw = EncodeFrame(EncodeHello({kClusterProtocolVersion, "test", "raw"}));
  const std::string part = EncodeFrame(
      EncodeEnvelope({Envelope::Kind::kChunk, 7, "", 0, std::string(kRpcChunkBytes, 'q')}));
  for (size_t sent = 0; sent <= kRpcMaxMessageBytes; sent += kRpcChunkBytes) raw += part;
  std::atomic<bool> closed{false};
  std::thread t([&] {
    int fd = ConnectLoopback(server_->port());
    SendFully(fd, raw);
    timeval tv{5, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    char buf[256];
    while (::read(fd, buf, sizeof buf) > 0) {
    }
    ::close(fd);
    closed = true;
  });
  // A client's call on its own connection meanwhile.
  std::optional<Result<std::string>> echo;
  client_->Call(addr_, "echo", std::string(3 * kRpcChunkBytes, 'e'), Duration(10000),
                [&](Result<std::string> r) { echo = std::move(r); });
  EXPECT_TRUE(RunUntil([&] { return closed.load() && echo.has_value(); }, 10000));
  t.join();
  EXPECT_EQ(Metric("oklog_rpc_streams_dropped_total{reason=\"malformed\"}"), 1);
  ASSERT_TRUE(echo.has_value());
  EXPECT_TRUE(echo->ok()) << echo->status().ToString();
  EXPECT_EQ(server_->connections(), 1u);
}

// ---- a keyed cluster port (common/crypto/seal.h) ----

std::shared_ptr<const crypto::Keyring> Ring(const std::vector<std::string>& keys) {
  std::string text;
  for (const std::string& k : keys) text += k + "\n";
  return crypto::Keyring::Parse(text).value();
}

class SealedRpcTest : public RpcTest {
 protected:
  void SetUp() override {
    key_a_ = crypto::Keyring::Generate().value();
    key_b_ = crypto::Keyring::Generate().value();
    ASSERT_EQ(uv_loop_init(&loop_), 0);
    RpcServer::Options so;
    so.cluster_name = "test";
    so.node_name = "server";
    so.keyring = Ring({key_a_});
    server_ = RpcServer::Create(&loop_, so, &metrics_);
    ASSERT_TRUE(server_->Listen("127.0.0.1:0").ok());
    addr_ = "127.0.0.1:" + std::to_string(server_->port());
    client_ = Client(Ring({key_a_}));
    server_->Handle("echo", [this](std::shared_ptr<ServerCall> c) {
      ++handled_;
      c->Respond(Status::Ok(), c->body());
    });
  }
  std::unique_ptr<RpcClient> Client(std::shared_ptr<const crypto::Keyring> ring) {
    RpcClient::Options o;
    o.cluster_name = "test";
    o.node_name = "client";
    o.keyring = std::move(ring);
    return RpcClient::Create(&loop_, o, nullptr);
  }
  std::string key_a_, key_b_;
  int handled_ = 0;
};

TEST_F(SealedRpcTest, CallsRoundTripSealedWithLargeBodiesBothWays) {
  EXPECT_EQ(CallSync(client_.get(), "echo", "hello").value(), "hello");
  std::string big(3 * kRpcChunkBytes + 77, 'y');
  for (size_t i = 0; i < big.size(); i += 999) big[i] = static_cast<char>('a' + i % 26);
  Result<std::string> r = CallSync(client_.get(), "echo", big, Duration(10000));
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(*r, big);
  EXPECT_EQ(handled_, 2);
  EXPECT_EQ(Metric("oklog_rpc_streams_dropped_total{reason=\"unauthenticated\"}"), 0);
}

TEST_F(SealedRpcTest, AClientWithoutAKeyOrWithAnotherKeyIsRefusedAndCallsNothing) {
  auto keyless = RpcClient::Create(&loop_, {"test", "intruder"}, nullptr);
  EXPECT_FALSE(CallSync(keyless.get(), "echo", "x").ok());
  EXPECT_EQ(Metric("oklog_rpc_streams_dropped_total{reason=\"unauthenticated\"}"), 1);
  auto other = Client(Ring({key_b_}));
  EXPECT_FALSE(CallSync(other.get(), "echo", "x").ok());
  EXPECT_EQ(Metric("oklog_rpc_streams_dropped_total{reason=\"unauthenticated\"}"), 2);
  EXPECT_EQ(handled_, 0);
  EXPECT_EQ(CallSync(client_.get(), "echo", "still here").value(), "still here");
  keyless->Close();
  other->Close();
}

TEST_F(SealedRpcTest, ACallerWithTheKeyButAnotherClusterNameIsRefused) {
  RpcClient::Options o;
  o.cluster_name = "other";
  o.node_name = "x";
  o.keyring = Ring({key_a_});
  auto other = RpcClient::Create(&loop_, o, nullptr);
  EXPECT_FALSE(CallSync(other.get(), "echo", "x").ok());
  EXPECT_EQ(Metric("oklog_rpc_streams_dropped_total{reason=\"unauthenticated\"}"), 1);
  EXPECT_EQ(handled_, 0);
  other->Close();
}

TEST_F(SealedRpcTest, RawHellosAndForgedFramesAreRefused) {
  // A plain hello and request, as a keyless process would send them.
  SendRaw(EncodeFrame(EncodeHello({kClusterProtocolVersion, "test", "raw"})) + EncodeFrame("\x94\x00\x01\xa4" "echo\xc4\x00"));
  EXPECT_EQ(Metric("oklog_rpc_streams_dropped_total{reason=\"unauthenticated\"}"), 1);
  // A well-formed preamble, then a frame no key opens.
  crypto::StreamSeal fake(Ring({key_b_}), "test");
  SendRaw(EncodeFrame(fake.preamble()) + EncodeFrame(std::string(40, 'z')));
  EXPECT_EQ(Metric("oklog_rpc_streams_dropped_total{reason=\"unauthenticated\"}"), 2);
  EXPECT_EQ(handled_, 0);
}

TEST_F(SealedRpcTest, ARotationKeepsCallingAndARemovedKeyClosesItsConnections) {
  server_->SetKeyring(Ring({key_a_, key_b_}));  // step 1: the new key is accepted everywhere
  client_->SetKeyring(Ring({key_a_, key_b_}));
  EXPECT_EQ(CallSync(client_.get(), "echo", "1").value(), "1");
  client_->SetKeyring(Ring({key_b_, key_a_}));  // step 2: the new key is primary
  EXPECT_EQ(CallSync(client_.get(), "echo", "2").value(), "2");  // the open connection keeps A
  EXPECT_EQ(client_->connections(), 1u);
  server_->SetKeyring(Ring({key_b_}));  // step 3: A removed; the server closes A's connection
  EXPECT_EQ(Metric("oklog_rpc_streams_dropped_total{reason=\"rekeyed\"}"), 1);
  Result<std::string> r = CallSync(client_.get(), "echo", "3");
  if (!r.ok()) r = CallSync(client_.get(), "echo", "3");  // the first may meet the closing one
  EXPECT_EQ(r.value(), "3");  // redialled, sealed with B
  auto old = Client(Ring({key_a_}));
  EXPECT_FALSE(CallSync(old.get(), "echo", "x").ok());
  old->Close();
}

TEST_F(RpcTest, AnIdleConnectionIsClosedByTheClientFirstAndTheNextCallRedials) {
  RpcClient::Options o;
  o.cluster_name = "test";
  o.node_name = "idler";
  o.idle_timeout = Duration(300);
  auto idler = RpcClient::Create(&loop_, o, &metrics_);
  EXPECT_EQ(CallSync(idler.get(), "echo", "1").value(), "1");
  EXPECT_EQ(idler->connections(), 1u);
  ASSERT_TRUE(RunUntil([&] { return idler->connections() == 0; }, 3000));
  EXPECT_EQ(Metric("oklog_rpc_connections_closed_total{reason=\"idle\"}"), 1);
  EXPECT_EQ(CallSync(idler.get(), "echo", "2").value(), "2");
  idler->Close();
}

TEST_F(RpcTest, TheServerClosesAConnectionIdleWithNoCallButNotOneWithACallInFlight) {
  server_->Close();
  RunUntil([&] { return server_->done(); }, 2000);
  RpcServer::Options so;
  so.cluster_name = "test";
  so.node_name = "server";
  so.idle_timeout = Duration(400);
  server_ = RpcServer::Create(&loop_, so, &metrics_);
  ASSERT_TRUE(server_->Listen("127.0.0.1:0").ok());
  addr_ = "127.0.0.1:" + std::to_string(server_->port());
  server_->Handle("echo", [](std::shared_ptr<ServerCall> c) { c->Respond(Status::Ok(), c->body()); });
  std::shared_ptr<ServerCall> held;
  server_->Handle("hold", [&](std::shared_ptr<ServerCall> c) { held = c; });
  std::optional<Result<std::string>> slow;
  client_->Call(addr_, "hold", "", Duration(5000), [&](Result<std::string> r) { slow = std::move(r); });
  RunUntil([&] { return false; }, 1200);  // three idle timeouts with a call in flight
  EXPECT_EQ(Metric("oklog_rpc_streams_dropped_total{reason=\"idle\"}"), 0);
  ASSERT_TRUE(held);
  held->Respond(Status::Ok(), "done");
  ASSERT_TRUE(RunUntil([&] { return slow.has_value(); }, 2000));
  EXPECT_EQ(slow->value(), "done");
  ASSERT_TRUE(RunUntil([&] { return Metric("oklog_rpc_streams_dropped_total{reason=\"idle\"}") == 1; }, 3000));
  EXPECT_EQ(CallSync(client_.get(), "echo", "again").value(), "again");
}

TEST_F(RpcTest, ConnectionsBeyondTheCapAreClosedAtOnceAndCounted) {
  server_->Close();
  RunUntil([&] { return server_->done(); }, 2000);
  RpcServer::Options so;
  so.cluster_name = "test";
  so.node_name = "server";
  so.max_connections = 1;
  server_ = RpcServer::Create(&loop_, so, &metrics_);
  ASSERT_TRUE(server_->Listen("127.0.0.1:0").ok());
  addr_ = "127.0.0.1:" + std::to_string(server_->port());
  server_->Handle("echo", [](std::shared_ptr<ServerCall> c) { c->Respond(Status::Ok(), c->body()); });
  EXPECT_EQ(CallSync(client_.get(), "echo", "first").value(), "first");
  auto second = RpcClient::Create(&loop_, {"test", "second"}, nullptr);
  EXPECT_FALSE(CallSync(second.get(), "echo", "x").ok());
  EXPECT_EQ(Metric("oklog_rpc_streams_dropped_total{reason=\"cap\"}"), 1);
  EXPECT_EQ(CallSync(client_.get(), "echo", "still").value(), "still");
  second->Close();
}

}  // namespace
}  // namespace oklog::rpc
