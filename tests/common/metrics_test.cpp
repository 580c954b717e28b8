#include "common/metrics.h"

#include <gtest/gtest.h>

#include <thread>

namespace oklog {
namespace {

TEST(MetricsTest, RendersPrometheusText) {
  Registry r;
  r.NewCounter("oklog_test_total", "a counter")->Inc(3);
  r.NewGauge("oklog_gauge", "a gauge")->Set(1.5);
  r.NewCounterFamily("oklog_conn", "by kind", {"modality"})->With({"fast"})->Inc();
  auto* h = r.NewHistogram("oklog_lat_seconds", "latency", {0.1, 1});
  h->Observe(0.05);
  h->Observe(5);
  int owner = 0;
  r.NewGaugeCallback("oklog_cb", "callback", &owner, [] { return 42.0; });
  std::string t = r.Render();
  EXPECT_NE(t.find("# TYPE oklog_test_total counter\noklog_test_total 3\n"), std::string::npos) << t;
  EXPECT_NE(t.find("oklog_gauge 1.5\n"), std::string::npos);
  EXPECT_NE(t.find("oklog_conn{modality=\"fast\"} 1\n"), std::string::npos);
  EXPECT_NE(t.find("oklog_lat_seconds_bucket{le=\"0.1\"} 1\n"), std::string::npos);
  EXPECT_NE(t.find("oklog_lat_seconds_bucket{le=\"+Inf\"} 2\n"), std::string::npos);
  EXPECT_NE(t.find("oklog_lat_seconds_count 2\n"), std::string::npos);
  EXPECT_NE(t.find("oklog_cb 42\n"), std::string::npos);
  r.RemoveCallbacks(&owner);
  EXPECT_EQ(r.Render().find("oklog_cb 42"), std::string::npos);
}

TEST(MetricsTest, ConcurrentIncrementsAreNotLost) {
  Registry r;
  Counter* c = r.NewCounter("c", "c");
  std::vector<std::thread> ts;
  for (int t = 0; t < 4; ++t) ts.emplace_back([c] { for (int i = 0; i < 100000; ++i) c->Inc(); });
  for (auto& t : ts) t.join();
  EXPECT_EQ(c->Value(), 400000u);
}

}  // namespace
}  // namespace oklog
