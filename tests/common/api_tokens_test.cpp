// ApiTokens: the tokens file's grammar, the scopes, and the guard's answers (401/403).
#include "common/api_tokens.h"

#include <gtest/gtest.h>

#include "common/http_client.h"
#include "common/http_test_util.h"
#include "test_util.h"

namespace oklog {
namespace {

using V = ApiTokens::Verdict;

constexpr const char* kRead = "read-token-0123456789";
constexpr const char* kWrite = "write-token-0123456789";
constexpr const char* kBoth = "both-token-0123456789";

std::shared_ptr<const ApiTokens> Sample() {
  auto t = ApiTokens::Parse(std::string("# comment\n\n  read ") + kRead + "  # trailing comment\r\nwrite\t" + kWrite +
                            "\nread,write " + kBoth + "\n");
  EXPECT_TRUE(t.ok()) << t.status().ToString();
  return t.ok() ? *t : nullptr;
}

TEST(ApiTokensTest, ScopesAreSeparate) {
  auto t = Sample();
  ASSERT_EQ(t->size(), 3u);
  EXPECT_EQ(t->Check(std::string("Bearer ") + kRead, ApiScope::kRead), V::kAllowed);
  EXPECT_EQ(t->Check(std::string("Bearer ") + kRead, ApiScope::kWrite), V::kForbidden);
  EXPECT_EQ(t->Check(std::string("Bearer ") + kWrite, ApiScope::kWrite), V::kAllowed);
  EXPECT_EQ(t->Check(std::string("Bearer ") + kWrite, ApiScope::kRead), V::kForbidden);
  EXPECT_EQ(t->Check(std::string("Bearer ") + kBoth, ApiScope::kRead), V::kAllowed);
  EXPECT_EQ(t->Check(std::string("bearer  ") + kBoth, ApiScope::kWrite), V::kAllowed);  // scheme in any case
}

TEST(ApiTokensTest, MissingMalformedAndUnknownTokens) {
  auto t = Sample();
  EXPECT_EQ(t->Check("", ApiScope::kRead), V::kMissing);
  EXPECT_EQ(t->Check("Bearer", ApiScope::kRead), V::kMissing);
  EXPECT_EQ(t->Check("Bearer ", ApiScope::kRead), V::kMissing);
  EXPECT_EQ(t->Check(std::string("Basic ") + kRead, ApiScope::kRead), V::kMissing);
  EXPECT_EQ(t->Check(std::string("Bearer") + kRead, ApiScope::kRead), V::kMissing);
  EXPECT_EQ(t->Check("Bearer read-token-012345678", ApiScope::kRead), V::kInvalid);   // a prefix
  EXPECT_EQ(t->Check("Bearer read-token-01234567890", ApiScope::kRead), V::kInvalid);  // longer
  EXPECT_EQ(t->Check("Bearer READ-TOKEN-0123456789", ApiScope::kRead), V::kInvalid);   // tokens are exact
}

TEST(ApiTokensTest, RepeatedTokenGetsTheUnionOfItsScopes) {
  auto t = ApiTokens::Parse(std::string("read ") + kRead + "\nwrite " + kRead + "\n");
  ASSERT_TRUE(t.ok());
  EXPECT_EQ((*t)->size(), 1u);
  EXPECT_EQ((*t)->Check(std::string("Bearer ") + kRead, ApiScope::kWrite), V::kAllowed);
}

TEST(ApiTokensTest, BadFilesNameTheLine) {
  for (const char* text : {"admin 0123456789abcdef\n", "read short\n", "read\n", "0123456789abcdef\n",
                           "read 0123456789abcdef,x\n", "read, 0123456789abcdef\n", "# only comments\n\n", ""}) {
    auto t = ApiTokens::Parse(text);
    EXPECT_FALSE(t.ok()) << text;
  }
  auto t = ApiTokens::Parse("read 0123456789abcdef\n\nwrite tiny\n");
  ASSERT_FALSE(t.ok());
  EXPECT_NE(t.status().message().find("line 3"), std::string::npos) << t.status().ToString();
  EXPECT_EQ(ApiTokens::LoadFile("/nonexistent/tokens").status().code(), Code::kNotFound);
}

TEST(ApiTokensTest, ScopeForMethods) {
  EXPECT_EQ(ScopeFor("GET"), ApiScope::kRead);
  EXPECT_EQ(ScopeFor("HEAD"), ApiScope::kRead);
  for (const char* m : {"POST", "PUT", "DELETE", "PATCH", "OPTIONS"}) EXPECT_EQ(ScopeFor(m), ApiScope::kWrite) << m;
}

// The guard on a real server: 401 with a Bearer challenge, 403 for the wrong scope, open paths.
TEST(ApiTokensTest, GuardAnswers401And403AndLeavesOpenPathsAlone) {
  testing::LoopThread loop;
  auto server = HttpServer::Create(loop.loop(), *ParseAddress("127.0.0.1:0", 0), {}, nullptr);
  ASSERT_TRUE(server.ok());
  std::shared_ptr<const ApiTokens> tokens = Sample();
  auto ok = [](const HttpRequest&, std::shared_ptr<HttpResponse> w) { w->Send(200, "ok\n"); };
  (*server)->Handle("/store/", ok);
  (*server)->Handle("/health", ok);
  (*server)->SetGuard(TokenGuard([&tokens] { return tokens; }, {"/health"}));
  const std::string base = "http://127.0.0.1:" + std::to_string((*server)->port());
  loop.Start();
  auto fetch = [&](const char* method, const std::string& path, const std::string& token) {
    HttpClientOptions o;
    if (!token.empty()) o.headers = {{"Authorization", "Bearer " + token}};
    auto r = HttpFetchAll(method, base + path, o);
    EXPECT_TRUE(r.ok());
    return r.ok() ? *r : HttpClientResponse{};
  };
  auto none = fetch("GET", "/store/query", "");
  EXPECT_EQ(none.status, 401);
  EXPECT_EQ(none.Header("WWW-Authenticate"), "Bearer realm=\"oklog\"");
  auto bad = fetch("GET", "/store/query", "not-a-known-token-at-all");
  EXPECT_EQ(bad.status, 401);
  EXPECT_NE(bad.Header("WWW-Authenticate").find("invalid_token"), std::string::npos);
  EXPECT_EQ(fetch("GET", "/store/query", kRead).status, 200);
  EXPECT_EQ(fetch("HEAD", "/store/query", kRead).status, 200);
  auto wrong = fetch("POST", "/store/query", kRead);
  EXPECT_EQ(wrong.status, 403);
  EXPECT_NE(wrong.Header("WWW-Authenticate").find("insufficient_scope"), std::string::npos);
  EXPECT_EQ(fetch("POST", "/store/query", kWrite).status, 200);
  EXPECT_EQ(fetch("GET", "/store/query", kWrite).status, 403);
  EXPECT_EQ(fetch("GET", "/health", "").status, 200);
  EXPECT_EQ(fetch("GET", "/nowhere", "").status, 401);
  loop.Run([&] { tokens = nullptr; });  // no tokens file: everything goes
  EXPECT_EQ(fetch("GET", "/store/query", "").status, 200);
  loop.Stop([&] { (*server)->Close(); });
}

}  // namespace
}  // namespace oklog
