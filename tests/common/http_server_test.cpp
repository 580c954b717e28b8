#include "common/http_server.h"

#include <gtest/gtest.h>

#include <atomic>
#include <memory>

#include "common/http_client.h"
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

// CORS is off by default (issue 11): no Access-Control-* header, whatever the Origin.
TEST_F(HttpServerTest, GetReturnsBodyWithLengthAndNoCorsHeader) {
  StartServer([](HttpServer* s) { s->Handle("/hello", Hello); });
  auto r = Curl("-i -H 'Origin: http://evil.example' " + base_ + "/hello");
  ASSERT_EQ(r.exit_code, 0);
  EXPECT_NE(r.output.find("HTTP/1.1 200 OK\r\n"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("Content-Length: 5\r\n"), std::string::npos);
  EXPECT_EQ(r.output.find("Access-Control-"), std::string::npos) << r.output;
  EXPECT_EQ(r.output.find("Vary:"), std::string::npos) << r.output;
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

// A client that pipelines requests and never reads the answers: the server parses more only
// while less than about 1 MiB of answers is queued (the rest waits in the kernel's buffers),
// so memory stays bounded; once the client reads, every answer comes, in order.
TEST_F(HttpServerTest, PipelinedRequestsWhoseAnswersAreNotReadStopBeingParsed) {
  std::atomic<int> n{0};
  StartServer([&](HttpServer* s) {
    s->Handle("/n", [&](const HttpRequest& req, std::shared_ptr<HttpResponse> resp) {
      ++n;
      resp->Send(200, std::string(4096 - 8, '.') + "[" + req.Param("i") + "]");
    });
  });
  RawClient c(port());
  int small = 32 << 10;
  setsockopt(c.fd(), SOL_SOCKET, SO_RCVBUF, &small, sizeof small);
  const int kRequests = 5000;  // 20 MB of answers
  std::string reqs;
  for (int i = 0; i < kRequests; ++i) reqs += "GET /n?i=" + std::to_string(i) + " HTTP/1.1\r\nHost: x\r\n\r\n";
  ASSERT_TRUE(c.Send(reqs));
  std::this_thread::sleep_for(1s);
  EXPECT_LT(n.load(), 2500) << "answers pile up without bound";
  std::string out = c.Read(30s, "[" + std::to_string(kRequests - 1) + "]");
  EXPECT_EQ(n.load(), kRequests);
  size_t got = 0;
  for (size_t p = out.find("HTTP/1.1 200"); p != std::string::npos; p = out.find("HTTP/1.1 200", p + 1)) ++got;
  EXPECT_EQ(got, static_cast<size_t>(kRequests));
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

// Abort after a 200 went out: what was written arrives, then the chunked body ends without its
// last chunk and the connection closes, so curl (a real client) reports the transfer as failed
// instead of taking the answer for complete.
TEST_F(HttpServerTest, AbortedAnswerIsCutOffAndCurlSeesAFailedTransfer) {
  StartServer([](HttpServer* s) {
    s->Handle("/cut", [](const HttpRequest&, std::shared_ptr<HttpResponse> resp) {
      resp->Start(200, {});
      resp->Write("first part\n");
      resp->Abort("a store failed mid-stream");
    });
  });
  auto r = Curl("-sS " + base_ + "/cut");
  EXPECT_NE(r.exit_code, 0) << r.output;  // curl 18: transfer closed with outstanding read data
  EXPECT_NE(r.output.find("first part"), std::string::npos) << r.output;
  RawClient c(port());
  ASSERT_TRUE(c.Send("GET /cut HTTP/1.1\r\nHost: x\r\n\r\n"));
  bool closed = false;
  std::string out = c.Read(5s, "", &closed);
  EXPECT_TRUE(closed);
  EXPECT_NE(out.find("Transfer-Encoding: chunked"), std::string::npos) << out;
  EXPECT_EQ(out.find("\r\n0\r\n\r\n"), std::string::npos) << out;  // no last chunk
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

TEST_F(HttpServerTest, GarbageBytesGet400AndTheConnectionCloses) {
  StartServer([](HttpServer* s) { s->Handle("/", Hello); });
  RawClient c(port());
  ASSERT_TRUE(c.Send(std::string("\x16\x03\x01\x02\x00garbage\r\n\r\n", 16)));
  bool closed = false;
  std::string out = c.Read(5s, "", &closed);
  EXPECT_TRUE(out.starts_with("HTTP/1.1 400 Bad Request\r\n")) << out;
  EXPECT_NE(out.find("Connection: close\r\n"), std::string::npos);
  EXPECT_TRUE(closed);
  std::string text = loop_.Run([&] { return metrics_.Render(); });
  EXPECT_NE(text.find("oklog_api_bad_requests_total 1"), std::string::npos) << text;
}

TEST_F(HttpServerTest, BadRequestLineGets400) {
  StartServer([](HttpServer* s) { s->Handle("/", Hello); });
  for (std::string req : {"GET nopath HTTP/1.1\r\n\r\n", "GET / HTTP/1.1\r\nBad Header\r\n\r\n",
                          "GET /a%00b HTTP/1.1\r\n\r\n", "GET / HTTP/1.1\r\nContent-Length: x\r\n\r\n"}) {
    RawClient c(port());
    ASSERT_TRUE(c.Send(req));
    bool closed = false;
    std::string out = c.Read(5s, "", &closed);
    EXPECT_TRUE(out.starts_with("HTTP/1.1 400 ")) << req << " -> " << out;
    EXPECT_TRUE(closed) << req;
  }
}

TEST_F(HttpServerTest, OversizeHeaderGets431) {
  HttpServer::Options opts;
  opts.max_header_bytes = 1024;
  StartServer([](HttpServer* s) { s->Handle("/", Hello); }, opts);
  RawClient c(port());
  ASSERT_TRUE(c.Send("GET / HTTP/1.1\r\nX-Big: " + std::string(2000, 'b') + "\r\n\r\n"));
  bool closed = false;
  std::string out = c.Read(5s, "", &closed);
  EXPECT_TRUE(out.starts_with("HTTP/1.1 431 Request Header Fields Too Large\r\n")) << out;
  EXPECT_TRUE(closed);
  // A long URL counts too; curl sees the status.
  auto r = Curl("-o /dev/null -w '%{http_code}' '" + base_ + "/?q=" + std::string(2000, 'q') + "'");
  EXPECT_EQ(r.output, "431");
  // Under the limit is fine.
  EXPECT_EQ(Curl("-H 'X-Ok: " + std::string(500, 'o') + "' " + base_ + "/").output, "hello");
}

TEST_F(HttpServerTest, OversizeBodyGets413) {
  HttpServer::Options opts;
  opts.max_body_bytes = 64 * 1024;
  int handled = 0;
  StartServer(
      [&](HttpServer* s) {
        s->Handle("/up", [&](const HttpRequest& req, std::shared_ptr<HttpResponse> resp) {
          ++handled;
          resp->Send(200, std::to_string(req.body.size()));
        });
      },
      opts);
  HttpClientOptions copts;
  copts.body = std::string(64 * 1024, 'x');
  auto ok = HttpFetchAll("POST", base_ + "/up", copts);
  ASSERT_TRUE(ok.ok()) << ok.status().ToString();
  EXPECT_EQ(ok->body, "65536");
  // Declared too long: refused before the body is read.
  copts.body = std::string(1024 * 1024, 'x');
  auto big = HttpFetchAll("POST", base_ + "/up", copts);
  ASSERT_TRUE(big.ok()) << big.status().ToString();
  EXPECT_EQ(big->status, 413);
  EXPECT_EQ(big->Header("connection"), "close");
  // Chunked, found too long while reading.
  RawClient c(port());
  std::string chunk(40 * 1024, 'y');
  char size_line[32];
  snprintf(size_line, sizeof(size_line), "%zx\r\n", chunk.size());
  ASSERT_TRUE(c.Send("POST /up HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n" + std::string(size_line) + chunk + "\r\n" +
                     size_line + chunk + "\r\n0\r\n\r\n"));
  EXPECT_TRUE(c.Read(5s, "\r\n\r\n").starts_with("HTTP/1.1 413 ")) << "chunked";
  // curl sends "Expect: 100-continue" for big bodies and gets the 413 instead of a 100.
  auto r = Curl("-o /dev/null -w '%{http_code}' -H 'Expect: 100-continue' --data-binary @/proc/self/exe " + base_ + "/up");
  EXPECT_EQ(r.output, "413");
  EXPECT_EQ(loop_.Run([&] { return handled; }), 1);
}

TEST_F(HttpServerTest, ExpectContinueGetsAnInterimResponse) {
  StartServer([](HttpServer* s) {
    s->Handle("/up", [](const HttpRequest& req, std::shared_ptr<HttpResponse> resp) {
      resp->Send(200, std::to_string(req.body.size()));
    });
  });
  RawClient c(port());
  ASSERT_TRUE(c.Send("POST /up HTTP/1.1\r\nContent-Length: 3\r\nExpect: 100-continue\r\n\r\n"));
  EXPECT_EQ(c.Read(5s, "\r\n\r\n"), "HTTP/1.1 100 Continue\r\n\r\n");
  ASSERT_TRUE(c.Send("abc"));
  EXPECT_TRUE(c.Read(5s, "\r\n\r\n3").ends_with("\r\n\r\n3"));
}

TEST_F(HttpServerTest, UnknownPathGets404AndThePathLabelStaysBounded) {
  StartServer([](HttpServer* s) { s->Handle("/store/", Hello); });
  for (int i = 0; i < 20; ++i) {
    auto r = Curl("-w ' %{http_code}' " + base_ + "/junk" + std::to_string(i));
    EXPECT_EQ(r.output, "404 page not found\n 404");
  }
  Curl("-o /dev/null " + base_ + "/store/query");
  // Read on the loop: a response is counted right after its last write is queued.
  std::string text = loop_.Run([&] { return metrics_.Render(); });
  EXPECT_EQ(text.find("junk"), std::string::npos);
  EXPECT_NE(text.find("oklog_api_request_duration_seconds_count{method=\"GET\",path=\"other\",status_code=\"404\"} 20"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("path=\"/store/\",status_code=\"200\"} 1"), std::string::npos) << text;
}

TEST_F(HttpServerTest, LongestPrefixWins) {
  StartServer([](HttpServer* s) {
    s->Handle("/", [](const HttpRequest&, std::shared_ptr<HttpResponse> r) { r->Send(200, "root"); });
    s->Handle("/store/", [](const HttpRequest&, std::shared_ptr<HttpResponse> r) { r->Send(200, "store"); });
    s->Handle("/store/query", [](const HttpRequest&, std::shared_ptr<HttpResponse> r) { r->Send(200, "query"); });
  });
  EXPECT_EQ(HttpFetchAll("GET", base_ + "/store/query?x")->body, "query");
  EXPECT_EQ(HttpFetchAll("GET", base_ + "/store/stream")->body, "store");
  EXPECT_EQ(HttpFetchAll("GET", base_ + "/ui/")->body, "root");
}

TEST_F(HttpServerTest, QueryParametersAreDecodedAndRepeatedKeysKeptInOrder) {
  HttpRequest seen;
  StartServer([&](HttpServer* s) {
    s->Handle("/p", [&](const HttpRequest& req, std::shared_ptr<HttpResponse> resp) {
      seen = req;
      resp->Send(200, "");
    });
  });
  auto r = HttpFetchAll("GET", base_ + "/p%20x/%41?a=1&q=a+b%20c&a=2&regex&z=%00x&bad=%zz%4&e=&&a=3&k%3D=v%26");
  ASSERT_TRUE(r.ok());
  loop_.Run([&] {
    EXPECT_EQ(seen.path, "/p x/A");
    EXPECT_EQ(seen.raw_query, "a=1&q=a+b%20c&a=2&regex&z=%00x&bad=%zz%4&e=&&a=3&k%3D=v%26");
    auto [lo, hi] = seen.params.equal_range("a");
    std::vector<std::string> as;
    for (auto it = lo; it != hi; ++it) as.push_back(it->second);
    EXPECT_EQ(as, (std::vector<std::string>{"1", "2", "3"}));
    EXPECT_EQ(seen.Param("a"), "1");
    EXPECT_EQ(seen.Param("q"), "a b c");
    EXPECT_TRUE(seen.Has("regex"));  // OK Log's presence flag
    EXPECT_EQ(seen.Param("regex", "def"), "");
    EXPECT_EQ(seen.Param("z"), std::string("\0x", 2));
    EXPECT_EQ(seen.Param("bad"), "%zz%4");
    EXPECT_TRUE(seen.Has("e"));
    EXPECT_EQ(seen.Param("k="), "v&");
    EXPECT_FALSE(seen.Has("missing"));
    EXPECT_EQ(seen.Param("missing", "def"), "def");
    EXPECT_EQ(seen.method, "GET");
    EXPECT_TRUE(seen.peer.starts_with("127.0.0.1:")) << seen.peer;
    EXPECT_EQ(seen.headers.at("connection"), "close");
  });
}

TEST(UrlCodingTest, DecodeHandlesEscapesPlusAndInvalidSequences) {
  EXPECT_EQ(UrlDecode("a%20b+c", true), "a b c");
  EXPECT_EQ(UrlDecode("a%20b+c", false), "a b+c");
  EXPECT_EQ(UrlDecode("%00", false), std::string(1, '\0'));
  EXPECT_EQ(UrlDecode("%4a%4A", false), "JJ");
  EXPECT_EQ(UrlDecode("%", false), "%");
  EXPECT_EQ(UrlDecode("%4", false), "%4");
  EXPECT_EQ(UrlDecode("%g0%0g", false), "%g0%0g");
  EXPECT_EQ(UrlDecode("100%", true), "100%");
  EXPECT_EQ(UrlDecode("%%41", false), "%A");
}

TEST(UrlCodingTest, EncodeRoundTripsEveryByte) {
  std::string all;
  for (int i = 0; i < 256; ++i) all += static_cast<char>(i);
  std::string enc = UrlEncode(all);
  EXPECT_EQ(enc.find_first_not_of("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.~%"),
            std::string::npos);
  EXPECT_EQ(UrlDecode(enc, true), all);
  EXPECT_EQ(UrlEncode("a b+c/d"), "a%20b%2Bc%2Fd");
}

TEST_F(HttpServerTest, SlowlorisIsClosedAfterTheIdleTimeout) {
  HttpServer::Options opts;
  opts.idle_timeout_ms = 300;
  StartServer([](HttpServer* s) { s->Handle("/", Hello); }, opts);
  RawClient c(port());
  ASSERT_TRUE(c.Send("GET / HTTP/1.1\r\n"));
  auto start = std::chrono::steady_clock::now();
  bool closed = false;
  for (int i = 0; i < 40 && !closed; ++i) {  // one header byte every 50 ms does not extend it
    if (!c.Send("X")) break;
    c.Read(50ms, "", &closed);
  }
  if (!closed) c.Read(2s, "", &closed);
  EXPECT_TRUE(closed);
  EXPECT_LT(std::chrono::steady_clock::now() - start, 1500ms);
}

TEST_F(HttpServerTest, IdleKeepAliveConnectionIsClosedButQuietResponseIsNot) {
  HttpServer::Options opts;
  opts.idle_timeout_ms = 200;
  std::shared_ptr<HttpResponse> quiet;
  StartServer(
      [&](HttpServer* s) {
        s->Handle("/", Hello);
        s->Handle("/quiet", [&](const HttpRequest&, std::shared_ptr<HttpResponse> resp) {
          resp->Start(200, {});
          quiet = resp;
        });
      },
      opts);
  RawClient idle(port());
  ASSERT_TRUE(idle.Send("GET / HTTP/1.1\r\n\r\n"));
  EXPECT_TRUE(idle.Read(2s, "hello").ends_with("hello"));
  bool closed = false;
  idle.Read(2s, "", &closed);
  EXPECT_TRUE(closed) << "idle keep-alive connection";

  RawClient tail(port());
  ASSERT_TRUE(tail.Send("GET /quiet HTTP/1.1\r\n\r\n"));
  EXPECT_NE(tail.Read(2s, "\r\n\r\n").find("chunked"), std::string::npos);
  tail.Read(600ms, "", &closed);
  EXPECT_FALSE(closed) << "a quiet response outlived the idle timeout";
  loop_.Run([&] {
    EXPECT_TRUE(quiet->Write("late\n"));
    quiet->Finish();
    quiet.reset();
  });
  EXPECT_TRUE(tail.Read(2s, "0\r\n\r\n").ends_with("late\n\r\n0\r\n\r\n"));
}

TEST_F(HttpServerTest, HandlerThatThrowsGets500) {
  StartServer([](HttpServer* s) {
    s->Handle("/", [](const HttpRequest&, std::shared_ptr<HttpResponse>) { throw std::runtime_error("boom"); });
  });
  auto r = HttpFetchAll("GET", base_ + "/");
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->status, 500);
}

TEST_F(HttpServerTest, CorsPreflightIsRefusedWithoutAllowedOrigins) {
  StartServer([](HttpServer* s) { s->Handle("/store/", Hello); });
  auto r = Curl("-i -X OPTIONS -H 'Origin: http://ui' -H 'Access-Control-Request-Method: GET' " + base_ +
                "/store/query");
  EXPECT_TRUE(r.output.starts_with("HTTP/1.1 403 Forbidden\r\n")) << r.output;
  EXPECT_EQ(r.output.find("Access-Control-"), std::string::npos) << r.output;
}

HttpServer::Options WithOrigins(std::vector<std::string> origins) {
  HttpServer::Options o;
  o.cors_origins = std::move(origins);
  return o;
}

TEST_F(HttpServerTest, CorsPreflightFromAListedOriginIsAllowed) {
  StartServer([](HttpServer* s) { s->Handle("/store/", Hello); }, WithOrigins({"http://ui", "https://other:8443"}));
  auto r = Curl("-i -X OPTIONS -H 'Origin: http://ui' -H 'Access-Control-Request-Method: GET' "
                "-H 'Access-Control-Request-Headers: authorization' " + base_ + "/store/query");
  EXPECT_TRUE(r.output.starts_with("HTTP/1.1 204 No Content\r\n")) << r.output;
  EXPECT_NE(r.output.find("Access-Control-Allow-Origin: http://ui\r\n"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("Access-Control-Allow-Methods: GET, POST, HEAD\r\n"), std::string::npos);
  EXPECT_NE(r.output.find("Access-Control-Allow-Headers: authorization\r\n"), std::string::npos);
  EXPECT_NE(r.output.find("Vary: Origin\r\n"), std::string::npos);
  auto unlisted = Curl("-i -X OPTIONS -H 'Origin: http://evil' -H 'Access-Control-Request-Method: GET' " + base_ +
                       "/store/query");
  EXPECT_TRUE(unlisted.output.starts_with("HTTP/1.1 403 Forbidden\r\n")) << unlisted.output;
  EXPECT_EQ(unlisted.output.find("Access-Control-Allow-Origin"), std::string::npos) << unlisted.output;
}

TEST_F(HttpServerTest, CorsEchoesOnlyAListedOrigin) {
  StartServer([](HttpServer* s) { s->Handle("/hello", Hello); }, WithOrigins({"http://ui", "https://other:8443"}));
  auto listed = Curl("-i -H 'Origin: https://other:8443' " + base_ + "/hello");
  EXPECT_NE(listed.output.find("Access-Control-Allow-Origin: https://other:8443\r\n"), std::string::npos)
      << listed.output;
  EXPECT_NE(listed.output.find("Access-Control-Expose-Headers: X-Oklog-From"), std::string::npos);
  EXPECT_NE(listed.output.find("Vary: Origin\r\n"), std::string::npos);
  for (const char* origin : {"http://evil", "http://ui.evil", "https://other:8444", "null"}) {
    auto r = Curl(std::string("-i -H 'Origin: ") + origin + "' " + base_ + "/hello");
    EXPECT_EQ(r.output.find("Access-Control-Allow-Origin"), std::string::npos) << origin << "\n" << r.output;
    EXPECT_NE(r.output.find("Vary: Origin\r\n"), std::string::npos) << r.output;  // caches keep them apart
  }
  auto none = Curl("-i " + base_ + "/hello");
  EXPECT_EQ(none.output.find("Access-Control-Allow-Origin"), std::string::npos) << none.output;
}

TEST_F(HttpServerTest, CorsStarAllowsEveryOrigin) {
  StartServer([](HttpServer* s) { s->Handle("/hello", Hello); }, WithOrigins({"*"}));
  auto r = Curl("-i -H 'Origin: http://anything' " + base_ + "/hello");
  EXPECT_NE(r.output.find("Access-Control-Allow-Origin: *\r\n"), std::string::npos) << r.output;
}

TEST_F(HttpServerTest, GuardAnswersBeforeTheRouteButNotPreflights) {
  StartServer(
      [](HttpServer* s) {
        s->Handle("/hello", Hello);
        s->SetGuard([](const HttpRequest& req, const std::shared_ptr<HttpResponse>& w) {
          if (req.headers.count("x-let-me-in") > 0) return false;
          w->Send(401, "no\n");
          return true;
        });
      },
      WithOrigins({"http://ui"}));
  EXPECT_EQ(HttpFetchAll("GET", base_ + "/hello")->status, 401);
  EXPECT_EQ(HttpFetchAll("GET", base_ + "/unknown")->status, 401);  // unknown paths too: no 404 to learn from
  HttpClientOptions in;
  in.headers = {{"X-Let-Me-In", "1"}};
  EXPECT_EQ(HttpFetchAll("GET", base_ + "/hello", in)->status, 200);
  auto pre = Curl("-i -X OPTIONS -H 'Origin: http://ui' -H 'Access-Control-Request-Method: GET' " + base_ + "/hello");
  EXPECT_TRUE(pre.output.starts_with("HTTP/1.1 204 No Content\r\n")) << pre.output;
}

TEST_F(HttpServerTest, ShortBodyForItsContentLengthClosesTheConnection) {
  StartServer([](HttpServer* s) {
    s->Handle("/", [](const HttpRequest&, std::shared_ptr<HttpResponse> resp) {
      resp->Start(200, {{"Content-Length", "10"}});
      resp->Write("abc");
      resp->Finish();
    });
  });
  auto r = HttpFetchAll("GET", base_ + "/");
  EXPECT_EQ(r.status().code(), Code::kIOError) << "the client must see the body cut short";
}

TEST_F(HttpServerTest, PipelinedRequestsWaitForAnAsynchronousResponse) {
  std::vector<std::shared_ptr<HttpResponse>> pending;
  StartServer([&](HttpServer* s) {
    s->Handle("/later", [&](const HttpRequest& req, std::shared_ptr<HttpResponse> resp) {
      pending.push_back(resp);  // finished from the test below
      resp->Start(200, {{"X-I", req.Param("i")}});
    });
    s->Handle("/now", Hello);
  });
  RawClient c(port());
  ASSERT_TRUE(c.Send("GET /later?i=1 HTTP/1.1\r\n\r\nGET /now HTTP/1.1\r\n\r\nGET /later?i=2 HTTP/1.1\r\n\r\n"));
  std::string first = c.Read(2s, "\r\n\r\n");
  EXPECT_NE(first.find("X-I: 1"), std::string::npos) << first;
  EXPECT_EQ(c.Read(300ms), "") << "the second request must wait for the first response";
  EXPECT_EQ(loop_.Run([&] { return pending.size(); }), 1u);
  loop_.Run([&] {
    pending[0]->Write("one");
    pending[0]->Finish();
  });
  std::string rest = c.Read(2s, "X-I: 2");
  EXPECT_TRUE(rest.starts_with("3\r\none\r\n0\r\n\r\nHTTP/1.1 200 OK\r\n")) << rest;
  EXPECT_NE(rest.find("hello"), std::string::npos);
  loop_.Run([&] {
    ASSERT_EQ(pending.size(), 2u);
    pending[1]->Finish();
    pending.clear();
  });
  EXPECT_EQ(c.Read(2s, "0\r\n\r\n"), "0\r\n\r\n");
}

TEST_F(HttpServerTest, Http10KeepAliveIsHonouredWithALength) {
  StartServer([](HttpServer* s) { s->Handle("/", Hello); });
  RawClient c(port());
  ASSERT_TRUE(c.Send("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"));
  std::string out = c.Read(2s, "hello");
  EXPECT_NE(out.find("Connection: keep-alive\r\n"), std::string::npos) << out;
  ASSERT_TRUE(c.Send("GET / HTTP/1.0\r\n\r\n"));
  bool closed = false;
  out = c.Read(2s, "", &closed);
  EXPECT_TRUE(out.ends_with("hello")) << out;
  EXPECT_TRUE(closed) << "plain HTTP/1.0 closes after the response";
}

}  // namespace
}  // namespace oklog
