// Prometheus metrics: counters, gauges and histograms, optionally with labels, rendered in the
// text exposition format. Updating a metric is lock-free and safe from any thread; creating
// metrics and rendering take the registry's mutex. Metric objects live as long as their
// Registry, so a pointer obtained once may be kept and updated from hot paths.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

namespace oklog {

class Counter {
 public:
  void Inc(uint64_t n = 1) { v_.fetch_add(n, std::memory_order_relaxed); }
  uint64_t Value() const { return v_.load(std::memory_order_relaxed); }

 private:
  std::atomic<uint64_t> v_{0};
};

class Gauge {
 public:
  void Set(double v) { v_.store(v, std::memory_order_relaxed); }
  void Add(double d);
  double Value() const { return v_.load(std::memory_order_relaxed); }

 private:
  std::atomic<double> v_{0};
};

class Histogram {
 public:
  explicit Histogram(std::vector<double> upper_bounds);
  void Observe(double v);
  const std::vector<double>& bounds() const { return bounds_; }
  // Cumulative counts per bound, then the +Inf count.
  std::vector<uint64_t> CumulativeCounts() const;
  double Sum() const { return sum_.load(std::memory_order_relaxed); }
  uint64_t Count() const { return count_.load(std::memory_order_relaxed); }

 private:
  std::vector<double> bounds_;
  std::unique_ptr<std::atomic<uint64_t>[]> buckets_;  // one per bound, plus +Inf
  std::atomic<double> sum_{0};
  std::atomic<uint64_t> count_{0};
};

// Bucket helpers.
std::vector<double> ExponentialBuckets(double start, double factor, int count);
std::vector<double> DefaultLatencyBuckets();  // 0.5 ms .. 10 s

// A labelled family. Label values are given in the order of the family's label names.
template <typename M>
class Family {
 public:
  M* With(const std::vector<std::string>& label_values);

 private:
  friend class Registry;
  std::function<std::unique_ptr<M>()> make_;
  std::vector<std::string> label_names_;
  std::map<std::vector<std::string>, std::unique_ptr<M>> children_;
  std::mutex* mu_ = nullptr;
};

class Registry {
 public:
  Registry();
  ~Registry();
  Registry(const Registry&) = delete;
  Registry& operator=(const Registry&) = delete;

  // Creating the same name twice returns the existing metric.
  Counter* NewCounter(const std::string& name, const std::string& help);
  Gauge* NewGauge(const std::string& name, const std::string& help);
  Histogram* NewHistogram(const std::string& name, const std::string& help, std::vector<double> bounds);
  Family<Counter>* NewCounterFamily(const std::string& name, const std::string& help,
                                    std::vector<std::string> label_names);
  Family<Gauge>* NewGaugeFamily(const std::string& name, const std::string& help,
                                std::vector<std::string> label_names);
  Family<Histogram>* NewHistogramFamily(const std::string& name, const std::string& help,
                                        std::vector<std::string> label_names, std::vector<double> bounds);
  // A gauge computed at render time on the rendering thread (e.g. a member count read on the
  // loop thread). The callback must stay valid until RemoveCallbacks(owner) or the registry dies.
  void NewGaugeCallback(const std::string& name, const std::string& help, const void* owner,
                        std::function<double()> fn);
  void RemoveCallbacks(const void* owner);

  // The text exposition format (version 0.0.4), metrics in name order.
  std::string Render() const;

 private:
  struct Entry;
  Entry& Slot(const std::string& name, const std::string& help, const char* type);
  mutable std::mutex mu_;
  std::map<std::string, std::unique_ptr<Entry>> entries_;
};

}  // namespace oklog
