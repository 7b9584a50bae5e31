// Tensor: a host array with a dtype, a static shape and a contiguous row-major buffer.
//
// Copies share the buffer (like a NumPy array view of the same memory); `clone()` copies.
// A tensor may also live on a device (the results of a CUDA function): its values are copied to
// the host on first host access, and a CUDA function takes it as an input without a copy.
// A Tensor maps to Eigen without a copy (`map<T>()`, `matrix<T>()`), and can wrap memory it does
// not own (`Tensor::view`) or take over an Eigen matrix. It reads and writes NumPy .npy files.
#pragma once

#include <Eigen/Core>
#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <memory>
#include <string>
#include <type_traits>
#include <vector>

#include "agnesi/error.hpp"
#include "agnesi/types.hpp"

namespace agnesi {

/// Memory that holds a tensor's values on a device. CUDA functions return their results in it and
/// keep shared variables in it between calls.
class DeviceStorage {
  public:
    virtual ~DeviceStorage() = default;
    virtual int device_ordinal() const = 0;
    /// The device address of the first element.
    virtual std::uint64_t address() const = 0;
    /// Copies the first `bytes` bytes to `host`, after the work that writes them has finished.
    virtual void download(void* host, std::size_t bytes) const = 0;
};

template <class T>
constexpr DType dtype_of() {
    if constexpr (std::is_same_v<T, bool>)
        return DType::Bool;
    else if constexpr (std::is_same_v<T, std::int32_t>)
        return DType::Int32;
    else if constexpr (std::is_same_v<T, std::int64_t>)
        return DType::Int64;
    else if constexpr (std::is_same_v<T, float>)
        return DType::Float32;
    else {
        static_assert(std::is_same_v<T, double>, "unsupported element type");
        return DType::Float64;
    }
}

class Tensor {
  public:
    /// An empty float64 scalar 0.
    Tensor();
    /// A float64 scalar (so `{"x", 0.5}` binds a value).
    Tensor(double v);  // NOLINT(google-explicit-constructor)
    /// Zero-filled tensor.
    Tensor(DType dtype, Shape shape);

    template <class T>
    static Tensor scalar(T v) {
        Tensor t(dtype_of<T>(), {});
        t.data<T>()[0] = v;
        return t;
    }
    /// A tensor of this shape holding `values` (row-major); sizes must agree.
    template <class T>
    static Tensor from_vector(Shape shape, const std::vector<T>& values) {
        Tensor t(dtype_of<T>(), std::move(shape));
        if (static_cast<std::size_t>(t.size()) != values.size())
            throw ValueError("Tensor::from_vector: " + std::to_string(values.size()) +
                             " values for shape " + shape_string(t.shape()));
        for (std::size_t i = 0; i < values.size(); ++i) t.data<T>()[i] = values[i];
        return t;
    }
    /// Wraps memory it does not own; the caller keeps it alive.
    static Tensor view(void* data, DType dtype, Shape shape);
    /// Takes over a row-major Eigen matrix without copying its elements.
    template <class T>
    static Tensor from_eigen(
        Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>&& m) {
        auto owner =
            std::make_shared<Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>>(
                std::move(m));
        Tensor t;
        t.dtype_ = dtype_of<T>();
        t.shape_ = {owner->rows(), owner->cols()};
        t.data_ = std::shared_ptr<void>(owner, owner->data());
        return t;
    }

    DType dtype() const { return dtype_; }
    const Shape& shape() const { return shape_; }
    std::size_t rank() const { return shape_.size(); }
    std::int64_t size() const { return numel(shape_); }
    std::size_t nbytes() const { return static_cast<std::size_t>(size()) * dtype_size(dtype_); }
    /// The host values. For a tensor on a device the first access copies them to the host; a
    /// writable access means the device copy is no longer used.
    void* raw() { return device_ ? host_for_write() : data_.get(); }
    const void* raw() const { return device_ ? host_for_read() : data_.get(); }

    template <class T>
    T* data() {
        check_type(dtype_of<T>());
        return static_cast<T*>(raw());
    }
    template <class T>
    const T* data() const {
        check_type(dtype_of<T>());
        return static_cast<const T*>(raw());
    }

    /// A tensor whose values are in `storage`.
    static Tensor on_device(DType dtype, Shape shape, std::shared_ptr<DeviceStorage> storage);
    /// The device storage holding this tensor's current values, or null: a host tensor, or one
    /// written through a writable host access since.
    const DeviceStorage* device_storage() const;
    /// The same values as a host tensor: itself on the host, a copy of a tensor on a device.
    Tensor to_host() const;
    /// Element i (row-major) converted to double, any dtype.
    double at(std::int64_t i) const;
    /// The only element of a one-element tensor, as double.
    double item() const;

    /// All elements as a flat Eigen vector, without a copy.
    template <class T>
    Eigen::Map<Eigen::Matrix<T, Eigen::Dynamic, 1>> map() {
        return {data<T>(), size()};
    }
    /// A rank-2 tensor as a row-major Eigen matrix, without a copy.
    template <class T>
    Eigen::Map<Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>> matrix() {
        if (rank() != 2)
            throw ShapeError("Tensor::matrix: needs rank 2, tensor has shape " +
                             shape_string(shape_));
        return {data<T>(), shape_[0], shape_[1]};
    }

    /// A deep copy (a tensor on a device shares its device memory, which is never written again).
    Tensor clone() const;
    /// A copy converted to another dtype.
    Tensor astype(DType dtype) const;
    /// Same buffer, new shape of the same size.
    Tensor reshaped(Shape shape) const;
    /// Whether no other Tensor shares this buffer (so its owner may reuse it).
    bool unique() const { return device_ ? device_.use_count() == 1 : data_.use_count() == 1; }

    /// Reads a .npy file (little-endian bool, int32, int64, float32, float64; C or Fortran order).
    static Tensor load_npy(const std::string& path);
    void save_npy(const std::string& path) const;

  private:
    struct DeviceCopy;
    struct NoStorage {};
    /// A tensor whose storage the caller sets: no host buffer is allocated for it.
    explicit Tensor(NoStorage, DType dtype, Shape shape)
        : dtype_(dtype), shape_(std::move(shape)) {}
    void check_type(DType t) const;
    void* host_for_write();
    const void* host_for_read() const;
    DType dtype_ = DType::Float64;
    Shape shape_;
    std::shared_ptr<void> data_;
    std::shared_ptr<DeviceCopy> device_;  // set for a tensor on a device (data_ is then null)
};

/// NumPy-style text: "0.5", "[1, 2, 3]", "[[1, 2], [3, 4]]", 17 significant digits.
std::string format_tensor(const Tensor& t);
/// One value with 17 significant digits ("nan", "inf", "-inf" as such).
std::string format_value(double v);

}  // namespace agnesi
