#include "common/http_server.h"

#include <gtest/gtest.h>

#include <atomic>
#include <memory>

#include "common/metrics.h"
#include "common/http_test_util.h"

namespace oklog {
namespace {

using namespace std::chrono_literals;
using testing::Curl;
using testing::LoopThread;
using testing::RawClient;
using testing::WaitFor;

class HttpServerTest : public ::testing::Test {
 protected:
  // Creates the server (loop not yet running), lets `routes` register handlers, starts the loop.
  void StartServer(const std::function<void(HttpServer*)>& routes, HttpServer::Options options = {}) {
    auto addr = ParseAddress("127.0.0.1:0", 0);
    ASSERT_TRUE(addr.ok());
    auto server = HttpServer::Create(loop_.loop(), *addr, options, &metrics_);
    ASSERT_TRUE(server.ok()) << server.status().ToString();
    server_ = std::move(server).value();
    routes(server_.get());
    base_ = "http://127.0.0.1:" + std::to_string(server_->port());
    loop_.Start();
  }
  void TearDown() override {
    if (server_ == nullptr) return;
    loop_.Stop([this] { server_->Close(); });
    EXPECT_TRUE(server_->done());
    server_.reset();
  }
  uint16_t port() const { return server_->port(); }

  Registry metrics_;
  LoopThread loop_;
  std::unique_ptr<HttpServer> server_;
  std::string base_;
};

void Hello(const HttpRequest&, std::shared_ptr<HttpResponse> resp) { resp->Send(200, "hello"); }

TEST_F(HttpServerTest, GetReturnsBodyWithLengthAndCorsHeader) {
  StartServer([](HttpServer* s) { s->Handle("/hello", Hello); });
  auto r = Curl("-i " + base_ + "/hello");
  ASSERT_EQ(r.exit_code, 0);
  EXPECT_NE(r.output.find("HTTP/1.1 200 OK\r\n"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("Content-Length: 5\r\n"), std::string::npos);
  EXPECT_NE(r.output.find("Access-Control-Allow-Origin: *\r\n"), std::string::npos);
  EXPECT_TRUE(r.output.ends_with("\r\n\r\nhello")) << r.output;
}

TEST_F(HttpServerTest, HeadSendsHeadersOnlyAndKeepsTheConnectionUsable) {
  StartServer([](HttpServer* s) {
    s->Handle("/hello", Hello);
    s->Handle("/chunked", [](const HttpRequest&, std::shared_ptr<HttpResponse> resp) {
      EXPECT_TRUE(resp->is_head());
      resp->Start(200, {{"X-Oklog-Q", "x"}});
      EXPECT_TRUE(resp->Write("dropped"));
      resp->Finish();
    });
  });
  RawClient c(port());
  ASSERT_TRUE(c.connected());
  ASSERT_TRUE(c.Send("HEAD /hello HTTP/1.1\r\nHost: x\r\n\r\n"));
  std::string head = c.Read(5s, "\r\n\r\n");
  EXPECT_NE(head.find("Content-Length: 5\r\n"), std::string::npos) << head;
  ASSERT_TRUE(c.Send("HEAD /chunked HTTP/1.1\r\nHost: x\r\n\r\nGET /hello HTTP/1.1\r\nHost: x\r\n\r\n"));
  std::string rest = c.Read(5s, "hello");
  EXPECT_EQ(rest.find("dropped"), std::string::npos) << rest;
  EXPECT_EQ(rest.find("Transfer-Encoding"), std::string::npos) << rest;
  EXPECT_NE(rest.find("X-Oklog-Q: x\r\n"), std::string::npos) << rest;
  EXPECT_TRUE(rest.ends_with("\r\n\r\nhello")) << rest;

  auto r = Curl("-I " + base_ + "/hello");
  ASSERT_EQ(r.exit_code, 0);
  EXPECT_NE(r.output.find("Content-Length: 5"), std::string::npos) << r.output;
}

TEST_F(HttpServerTest, PostBodyReachesTheHandler) {
  StartServer([](HttpServer* s) {
    s->Handle("/echo", [](const HttpRequest& req, std::shared_ptr<HttpResponse> resp) {
      resp->Send(200, req.method + ":" + req.body);
    });
  });
  auto r = Curl("--data-binary 'a b\nc' " + base_ + "/echo");
  ASSERT_EQ(r.exit_code, 0);
  EXPECT_EQ(r.output, "POST:a b\nc");
  // A chunked request body.
  r = Curl("-H 'Transfer-Encoding: chunked' --data-binary 'xyz' " + base_ + "/echo");
  EXPECT_EQ(r.output, "POST:xyz");
}

TEST_F(HttpServerTest, KeepAliveServesPipelinedRequestsInOrderOnOneConnection) {
  std::atomic<int> n{0};
  StartServer([&](HttpServer* s) {
    s->Handle("/n", [&](const HttpRequest& req, std::shared_ptr<HttpResponse> resp) {
      ++n;
      resp->Send(200, "[" + req.Param("i") + "]");
    });
  });
  RawClient c(port());
  std::string reqs;
  for (int i = 0; i < 5; ++i) reqs += "GET /n?i=" + std::to_string(i) + " HTTP/1.1\r\nHost: x\r\n\r\n";
  ASSERT_TRUE(c.Send(reqs));
  std::string out = c.Read(5s, "[4]");
  size_t pos = 0;
  for (int i = 0; i < 5; ++i) {
    size_t p = out.find("[" + std::to_string(i) + "]", pos);
    ASSERT_NE(p, std::string::npos) << out;
    pos = p;
  }
  EXPECT_EQ(n.load(), 5);

  auto r = Curl("-o /dev/null -o /dev/null -w '%{num_connects} ' " + base_ + "/n?i=a " + base_ + "/n?i=b");
  EXPECT_EQ(r.output, "1 0 ") << "curl should reuse the connection";
}

TEST_F(HttpServerTest, Http10GetsCloseDelimitedBodyWithoutChunking) {
  StartServer([](HttpServer* s) {
    s->Handle("/s", [](const HttpRequest&, std::shared_ptr<HttpResponse> resp) {
      resp->Start(200, {});
      resp->Write("abc");
      resp->Write("def");
      resp->Finish();
    });
  });
  RawClient c(port());
  ASSERT_TRUE(c.Send("GET /s HTTP/1.0\r\n\r\n"));
  bool closed = false;
  std::string out = c.Read(5s, "", &closed);
  EXPECT_TRUE(closed);
  EXPECT_EQ(out.find("chunked"), std::string::npos) << out;
  EXPECT_NE(out.find("Connection: close\r\n"), std::string::npos) << out;
  EXPECT_TRUE(out.ends_with("\r\n\r\nabcdef")) << out;
}

TEST_F(HttpServerTest, ChunkedStreamOfFiftyMegabytesHonoursBackpressure) {
  constexpr size_t kTotal = 50 * 1024 * 1024;
  constexpr size_t kChunk = 256 * 1024;
  constexpr size_t kHighWater = 1024 * 1024;
  size_t max_buffered = 0;
  std::atomic<bool> finished{false};
  StartServer([&](HttpServer* s) {
    s->Handle("/big", [&](const HttpRequest&, std::shared_ptr<HttpResponse> resp) {
      resp->Start(200, {{"Content-Type", "application/octet-stream"}});
      auto sent = std::make_shared<size_t>(0);
      auto produce = [resp, sent, &max_buffered, &finished] {
        while (*sent < kTotal && resp->buffered_bytes() < kHighWater) {
          ASSERT_TRUE(resp->Write(std::string(kChunk, static_cast<char>('a' + (*sent / kChunk) % 26))));
          *sent += kChunk;
          max_buffered = std::max(max_buffered, resp->buffered_bytes());
        }
        if (*sent == kTotal && !finished) {
          finished = true;
          resp->Finish();
        }
      };
      resp->OnDrain(produce);
      produce();
    });
  });
  auto r = Curl("-o /dev/null -w '%{http_code} %{size_download}' " + base_ + "/big");
  ASSERT_EQ(r.exit_code, 0);
  EXPECT_EQ(r.output, "200 " + std::to_string(kTotal));
  EXPECT_TRUE(finished);
  size_t mb = loop_.Run([&] { return max_buffered; });
  EXPECT_LE(mb, kHighWater + kChunk + 64);
  EXPECT_GT(mb, 0u);
}

TEST_F(HttpServerTest, ClientDisconnectMidStreamFiresOnCloseAndLaterWritesFail) {
  std::shared_ptr<HttpResponse> kept;
  std::atomic<int> on_close_calls{0};
  StartServer([&](HttpServer* s) {
    s->Handle("/tail", [&](const HttpRequest&, std::shared_ptr<HttpResponse> resp) {
      kept = resp;
      resp->OnClose([&] { ++on_close_calls; });
      resp->Start(200, {});
      auto produce = [r = resp.get()] {
        while (r->buffered_bytes() < 512 * 1024) r->Write(std::string(64 * 1024, 'x'));
      };
      resp->OnDrain(produce);
      produce();
    });
  });
  {
    RawClient c(port());
    ASSERT_TRUE(c.Send("GET /tail HTTP/1.1\r\nHost: x\r\n\r\n"));
    EXPECT_GT(c.Read(5s, std::string(1000, 'x')).size(), 1000u);
  }  // hangs up
  ASSERT_TRUE(WaitFor([&] { return on_close_calls.load() > 0; }));
  loop_.Run([&] {
    EXPECT_TRUE(kept->closed());
    EXPECT_FALSE(kept->Write("more"));
    kept->Finish();  // harmless
    kept.reset();
  });
  EXPECT_EQ(on_close_calls.load(), 1);
}

TEST_F(HttpServerTest, OnCloseFiresOnceWhenResponseFinishes) {
  int calls = 0;
  StartServer([&](HttpServer* s) {
    s->Handle("/", [&](const HttpRequest&, std::shared_ptr<HttpResponse> resp) {
      resp->OnClose([&] { ++calls; });
      resp->Send(200, "ok");
      EXPECT_TRUE(resp->closed());
      EXPECT_FALSE(resp->Write("late"));
    });
  });
  EXPECT_EQ(Curl(base_ + "/").output, "ok");
  EXPECT_EQ(loop_.Run([&] { return calls; }), 1);
}

TEST_F(HttpServerTest, HandlerMayFinishLaterFromAWorkerThread) {
  // The worker posts its result back to the loop through the test loop's async queue.
  std::vector<std::thread> workers;
  StartServer([&](HttpServer* s) {
    s->Handle("/slow", [&](const HttpRequest& req, std::shared_ptr<HttpResponse> resp) {
      std::string q = req.Param("q");
      workers.emplace_back([this, resp, q] {
        std::this_thread::sleep_for(50ms);
        loop_.Post([resp, q] {
          resp->Start(200, {});
          resp->Write("result for " + q);
          resp->Finish();
        });
      });
    });
  });
  auto r = Curl(base_ + "/slow?q=a " + base_ + "/slow?q=b");
  EXPECT_EQ(r.output, "result for aresult for b");
  loop_.Run([&] {
    for (auto& w : workers) w.join();
  });
}

TEST_F(HttpServerTest, CloseWithConnectionsOpenEndsWithEveryHandleClosed) {
  std::atomic<bool> stream_closed{false};
  StartServer([&](HttpServer* s) {
    s->Handle("/tail", [&](const HttpRequest&, std::shared_ptr<HttpResponse> resp) {
      resp->OnClose([&stream_closed, resp] { stream_closed = true; });  // holds itself until closed
      resp->Start(200, {});
      resp->Write("first\n");
    });
  });
  RawClient idle(port());
  RawClient partial(port());
  ASSERT_TRUE(partial.Send("GET /tail HTTP/1.1\r\nHo"));
  RawClient streaming(port());
  ASSERT_TRUE(streaming.Send("GET /tail HTTP/1.1\r\nHost: x\r\n\r\n"));
  EXPECT_NE(streaming.Read(5s, "first\n").find("first"), std::string::npos);
  // TearDown: Close() on the loop, then uv_loop_close() must return 0.
  TearDown();
  EXPECT_TRUE(stream_closed);
  bool closed = false;
  idle.Read(5s, "", &closed);
  EXPECT_TRUE(closed);
}

}  // namespace
}  // namespace oklog
