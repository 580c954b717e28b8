// The request side of HttpServer (http_server.h): bytes in, one HttpRequest at a time out, by
// Node's http-parser, with the server's limits (an oversize head is 431, an oversize body 413,
// a bad request target 400). No sockets and no loop: a Connection feeds it what it reads, and
// the fuzz target (tests/fuzz/fuzz_http_request.cpp) feeds it bytes. One thread at a time.
#pragma once

#include <chrono>
#include <cstddef>
#include <functional>
#include <memory>
#include <string>

#include "common/http_server.h"
#include "common/memory_budget.h"

namespace oklog {

class HttpRequestParser {
 public:
  struct Limits {
    size_t max_header_bytes = 64 * 1024;
    size_t max_body_bytes = 64 * 1024 * 1024;
    // Body bytes are charged to it while the request is held; a body it refuses is a 503.
    MemoryBudget* memory_budget = nullptr;
  };
  // What one Execute() found.
  struct Step {
    size_t consumed = 0;       // bytes of the input parsed
    bool request = false;      // a whole request is in request(); the parser waits (paused)
    int error_status = 0;      // 400, 413, 431 (bad), 503 (the memory budget): the connection must close
    std::string error_detail;  // http-parser's description of a syntax error, or ""
  };

  explicit HttpRequestParser(Limits limits);
  ~HttpRequestParser();
  HttpRequestParser(const HttpRequestParser&) = delete;
  HttpRequestParser& operator=(const HttpRequestParser&) = delete;

  // Called when a request head asks "Expect: 100-continue" (HTTP/1.1 and later).
  void OnContinue(std::function<void()> cb) { on_continue_ = std::move(cb); }
  // Called whenever body bytes arrive (an upload in progress is not idle).
  void OnBodyBytes(std::function<void()> cb) { on_body_ = std::move(cb); }

  // Parses from data, up to and including the end of one request. After a request or an error
  // the parser stays paused: the next Execute resumes after the request (pipelining); after an
  // error it must not be called again.
  Step Execute(const char* data, size_t n);

  // The last request (valid once a Step said request, until the next Execute).
  HttpRequest& request() { return request_; }
  const HttpRequest& request() const { return request_; }
  std::chrono::steady_clock::time_point request_start() const { return request_start_; }
  bool keep_alive() const { return keep_alive_; }
  bool http11() const;  // the request's version is 1.1 or later

 private:
  struct Impl;  // http-parser's state: its header stays out of ours
  void Fail(int status);
  bool CountHeaderBytes(size_t n);
  void CommitHeader();
  bool ParseTarget();

  friend struct HttpParserCallbacks;
  Limits limits_;
  std::unique_ptr<Impl> impl_;
  std::function<void()> on_continue_, on_body_;
  HttpRequest request_;
  std::string url_;
  std::string field_, value_;
  bool in_value_ = false;
  size_t header_bytes_ = 0;
  bool message_complete_ = false;
  bool keep_alive_ = true;
  int error_status_ = 0;
  std::chrono::steady_clock::time_point request_start_;
  MemoryCharge body_charge_;  // request_.body against limits_.memory_budget
};

}  // namespace oklog
