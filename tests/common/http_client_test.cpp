#include "common/http_client.h"

#include <gtest/gtest.h>

#include <atomic>
#include <memory>

#include "common/http_server.h"
#include "common/http_test_util.h"

namespace oklog {
namespace {

using namespace std::chrono_literals;
using testing::LoopThread;

// Accepts one connection on a loopback port, reads the request head, answers with canned bytes
// (optionally without closing for a while), then closes. For responses our server never sends.
class CannedServer {
 public:
  explicit CannedServer(std::string reply, std::chrono::milliseconds hold = 0ms) {
    fd_ = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in sa{};
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    bind(fd_, reinterpret_cast<sockaddr*>(&sa), sizeof(sa));
    listen(fd_, 4);
    socklen_t len = sizeof(sa);
    getsockname(fd_, reinterpret_cast<sockaddr*>(&sa), &len);
    port_ = ntohs(sa.sin_port);
    thread_ = std::thread([this, reply = std::move(reply), hold] {
      int c = accept(fd_, nullptr, nullptr);
      if (c < 0) return;
      std::string got;
      char buf[4096];
      while (got.find("\r\n\r\n") == std::string::npos) {
        ssize_t n = recv(c, buf, sizeof(buf), 0);
        if (n <= 0) break;
        got.append(buf, static_cast<size_t>(n));
      }
      request_ = got;
      send(c, reply.data(), reply.size(), MSG_NOSIGNAL);
      std::this_thread::sleep_for(hold);
      close(c);
    });
  }
  ~CannedServer() {
    shutdown(fd_, SHUT_RDWR);  // wakes accept() if nobody came
    thread_.join();
    close(fd_);
  }
  std::string url(const std::string& path = "/") const { return "127.0.0.1:" + std::to_string(port_) + path; }
  const std::string& request() const { return request_; }

 private:
  int fd_;
  uint16_t port_ = 0;
  std::thread thread_;
  std::string request_;
};

class HttpClientTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto server = HttpServer::Create(loop_.loop(), *ParseAddress("127.0.0.1:0", 0), {}, nullptr);
    ASSERT_TRUE(server.ok());
    server_ = std::move(server).value();
    server_->Handle("/echo", [](const HttpRequest& req, std::shared_ptr<HttpResponse> resp) {
      std::string out = req.method + " " + req.path + " q=" + req.Param("q") + " body=" + req.body +
                        " x=" + (req.headers.count("x-test") ? req.headers.at("x-test") : "");
      resp->Send(200, out);
    });
    server_->Handle("/stream", [](const HttpRequest& req, std::shared_ptr<HttpResponse> resp) {
      // n chunks of 1000 bytes, or endless when n is absent, paced by drain.
      long n = req.Has("n") ? std::stol(req.Param("n")) : -1;
      resp->Start(200, {{"X-Kind", "stream"}});
      auto left = std::make_shared<long>(n);
      auto produce = [r = resp.get(), left] {
        while (*left != 0 && r->buffered_bytes() < 512 * 1024) {
          if (!r->Write(std::string(1000, 'z'))) return;
          if (*left > 0) --*left;
        }
        if (*left == 0) r->Finish();
      };
      resp->OnDrain(produce);
      produce();
    });
    url_ = "http://127.0.0.1:" + std::to_string(server_->port());
    loop_.Start();
  }
  void TearDown() override {
    loop_.Stop([this] { server_->Close(); });
    EXPECT_TRUE(server_->done());
  }

  LoopThread loop_;
  std::unique_ptr<HttpServer> server_;
  std::string url_;
};

TEST_F(HttpClientTest, GetCollectsStatusHeadersAndBody) {
  HttpClientOptions opts;
  opts.headers = {{"X-Test", "yes"}};
  auto r = HttpFetchAll("GET", url_ + "/echo?q=" + UrlEncode("a b&c"), opts);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(r->Header("content-length"), std::to_string(r->body.size()));
  EXPECT_EQ(r->Header("CONTENT-LENGTH"), r->Header("content-length"));  // any case
  EXPECT_EQ(r->Header("Access-Control-Allow-Origin", "none"), "none");  // no CORS unless configured
  EXPECT_EQ(r->body, "GET /echo q=a b&c body= x=yes");
}

TEST_F(HttpClientTest, UrlWithoutSchemeOrPathWorks) {
  auto r = HttpFetchAll("GET", url_.substr(7));
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->status, 404);
  EXPECT_EQ(r->body, "404 page not found\n");
}

TEST_F(HttpClientTest, HeadCallbackSeesTheStatusBeforeTheBody) {
  HttpClientOptions opts;
  int status_seen = 0;
  opts.on_head = [&](const HttpClientResponse& head) { status_seen = head.status; };
  bool body_after_head = true;
  auto r = HttpFetch("GET", url_ + "/nothing-here", opts, [&](std::string_view) {
    body_after_head = body_after_head && status_seen == 404;
    return true;
  });
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(status_seen, 404);
  EXPECT_TRUE(body_after_head);
}

TEST_F(HttpClientTest, PostSendsTheBody) {
  HttpClientOptions opts;
  opts.body = std::string("line1\nline2\n");
  auto r = HttpFetchAll("POST", url_ + "/echo", opts);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->body, "POST /echo q= body=line1\nline2\n x=");
}

TEST_F(HttpClientTest, HeadReturnsHeadersWithoutBody) {
  int calls = 0;
  auto r = HttpFetch("HEAD", url_ + "/echo", {}, [&](std::string_view) {
    ++calls;
    return true;
  });
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->status, 200);
  EXPECT_NE(r->Header("content-length"), "0");
  EXPECT_EQ(calls, 0);
}

TEST_F(HttpClientTest, ChunkedBodyIsStreamedToTheCallback) {
  size_t total = 0;
  int calls = 0;
  auto r = HttpFetch("GET", url_ + "/stream?n=20000", {}, [&](std::string_view chunk) {
    total += chunk.size();
    ++calls;
    EXPECT_EQ(chunk.find_first_not_of('z'), std::string_view::npos);
    return true;
  });
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->Header("transfer-encoding"), "chunked");
  EXPECT_EQ(r->Header("x-kind"), "stream");
  EXPECT_EQ(total, 20000u * 1000u);
  EXPECT_GT(calls, 1);
}

TEST_F(HttpClientTest, CallbackReturningFalseStopsAnEndlessStream) {
  size_t total = 0;
  auto r = HttpFetch("GET", url_ + "/stream", {}, [&](std::string_view chunk) {
    total += chunk.size();
    return total < 3'000'000;
  });
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->status, 200);
  EXPECT_GE(total, 3'000'000u);
}

TEST_F(HttpClientTest, CancelFlagStopsAQuietStream) {
  server_->Handle("/quiet", [](const HttpRequest&, std::shared_ptr<HttpResponse> resp) {
    resp->Start(200, {});  // then nothing, until the client goes
    resp->OnClose([resp] {});
  });
  std::atomic<bool> cancel{false};
  std::thread t([&] {
    std::this_thread::sleep_for(200ms);
    cancel = true;
  });
  HttpClientOptions opts;
  opts.cancel = &cancel;
  auto start = std::chrono::steady_clock::now();
  auto r = HttpFetch("GET", url_ + "/quiet", opts, [](std::string_view) { return true; });
  t.join();
  EXPECT_EQ(r.status().code(), Code::kCancelled) << r.status().ToString();
  EXPECT_LT(std::chrono::steady_clock::now() - start, 5s);
}

TEST_F(HttpClientTest, BodyIdleTimeoutEndsAQuietStream) {
  server_->Handle("/quiet", [](const HttpRequest&, std::shared_ptr<HttpResponse> resp) {
    resp->Start(200, {});
    resp->Write("one\n");
    resp->OnClose([resp] {});
  });
  HttpClientOptions opts;
  opts.body_idle_timeout = 200ms;
  std::string got;
  auto r = HttpFetch("GET", url_ + "/quiet", opts, [&](std::string_view c) {
    got.append(c);
    return true;
  });
  EXPECT_EQ(r.status().code(), Code::kTimedOut) << r.status().ToString();
  EXPECT_EQ(got, "one\n");
}

TEST(HttpClientCannedTest, CloseDelimitedBodyEndsAtEof) {
  CannedServer s("HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil the end");
  auto r = HttpFetchAll("GET", s.url("/x?y=1"));
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->body, "until the end");
  EXPECT_TRUE(s.request().starts_with("GET /x?y=1 HTTP/1.1\r\n")) << s.request();
  EXPECT_NE(s.request().find("Connection: close\r\n"), std::string::npos);
  EXPECT_NE(s.request().find("Host: 127.0.0.1:"), std::string::npos);
}

TEST(HttpClientCannedTest, BodyCutShortIsAnIOError) {
  CannedServer s("HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly this");
  auto r = HttpFetchAll("GET", s.url());
  EXPECT_EQ(r.status().code(), Code::kIOError) << r.status().ToString();
}

TEST(HttpClientCannedTest, InterimContinueIsSkipped) {
  CannedServer s("HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nok");
  auto r = HttpFetchAll("POST", s.url());
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->status, 201);
  EXPECT_EQ(r->body, "ok");
}

TEST(HttpClientCannedTest, GarbageResponseIsAnIOError) {
  CannedServer s("SSH-2.0-OpenSSH\r\n\r\n");
  auto r = HttpFetchAll("GET", s.url());
  EXPECT_EQ(r.status().code(), Code::kIOError) << r.status().ToString();
}

TEST(HttpClientCannedTest, SilentServerTimesOut) {
  CannedServer s("", 600ms);  // reads the request, says nothing
  HttpClientOptions opts;
  opts.timeout = 200ms;
  auto start = std::chrono::steady_clock::now();
  auto r = HttpFetchAll("GET", s.url(), opts);
  EXPECT_EQ(r.status().code(), Code::kTimedOut) << r.status().ToString();
  EXPECT_LT(std::chrono::steady_clock::now() - start, 550ms);
}

TEST(HttpClientErrorTest, RefusedConnectionIsUnavailable) {
  // A port bound but never listened on refuses connections.
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(bind(fd, reinterpret_cast<sockaddr*>(&sa), sizeof(sa)), 0);
  socklen_t len = sizeof(sa);
  getsockname(fd, reinterpret_cast<sockaddr*>(&sa), &len);
  auto r = HttpFetchAll("GET", "127.0.0.1:" + std::to_string(ntohs(sa.sin_port)) + "/");
  close(fd);
  EXPECT_EQ(r.status().code(), Code::kUnavailable) << r.status().ToString();
}

TEST(HttpClientErrorTest, BadUrlsAreInvalidArguments) {
  // https:// is supported (tests/common/tls_test.cpp); other schemes are not.
  EXPECT_EQ(HttpFetchAll("GET", "ftp://example.com/").status().code(), Code::kInvalidArgument);
  EXPECT_EQ(HttpFetchAll("GET", "http:///path").status().code(), Code::kInvalidArgument);
  EXPECT_EQ(HttpFetchAll("GET", "host:99999/").status().code(), Code::kInvalidArgument);
}

}  // namespace
}  // namespace oklog
