// Run an exported heteroagg model from C++ with the ONNX Runtime C++ API, as
// acquisition software does: read the model's metadata, build a batch of
// images, run it and print θ̂ per image.
//
//   heteroagg_infer model.onnx [batch]
//
// The images are synthetic (bright discs on vacuum) so the program needs
// nothing but the model; replace make_batch() with the microscope's frames,
// in fractions of the incident beam.
#include <onnxruntime_cxx_api.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <stdexcept>
#include <string>
#include <vector>

namespace {

// The strings of a flat JSON list such as ["n_particles", "frac_w"].
std::vector<std::string> json_strings(const std::string& text) {
  std::vector<std::string> out;
  std::size_t pos = 0;
  while ((pos = text.find('"', pos)) != std::string::npos) {
    const std::size_t end = text.find('"', pos + 1);
    if (end == std::string::npos) break;
    out.push_back(text.substr(pos + 1, end - pos - 1));
    pos = end + 1;
  }
  return out;
}

// A JSON scalar as text: a string loses its quotes.
std::string unquote(const std::string& text) {
  return text.size() >= 2 && text.front() == '"' && text.back() == '"' ? text.substr(1, text.size() - 2) : text;
}

// The JSON-encoded metadata entry `key`.
std::string metadata(const Ort::ModelMetadata& meta, const char* key) {
  Ort::AllocatorWithDefaultOptions allocator;
  Ort::AllocatedStringPtr value = meta.LookupCustomMetadataMapAllocated(key, allocator);
  if (!value) throw std::runtime_error(std::string("the model has no metadata '") + key + "'");
  return value.get();
}

std::vector<float> make_batch(std::int64_t batch, std::int64_t ny, std::int64_t nx) {
  std::vector<float> images(static_cast<std::size_t>(batch * ny * nx), 0.0f);
  for (std::int64_t b = 0; b < batch; ++b)
    for (std::int64_t k = 0; k < 12; ++k) {
      const double cy = ny * (0.2 + 0.6 * ((k * 7 + b) % 11) / 10.0);
      const double cx = nx * (0.2 + 0.6 * ((k * 5 + 3 * b) % 13) / 12.0);
      const double r = 3.0 + (k % 4);
      for (std::int64_t y = 0; y < ny; ++y)
        for (std::int64_t x = 0; x < nx; ++x)
          if ((y - cy) * (y - cy) + (x - cx) * (x - cx) < r * r)
            images[static_cast<std::size_t>((b * ny + y) * nx + x)] += (k % 3 == 0) ? 0.04f : 0.01f;
    }
  return images;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::cerr << "usage: " << argv[0] << " model.onnx [batch]\n";
    return 2;
  }
  const std::int64_t batch = argc > 2 ? std::atoll(argv[2]) : 4;
  try {
    Ort::Env env(ORT_LOGGING_LEVEL_WARNING, "heteroagg");
    Ort::SessionOptions options;
    options.SetIntraOpNumThreads(1);
    Ort::Session session(env, argv[1], options);

    const Ort::ModelMetadata meta = session.GetModelMetadata();
    const std::vector<std::string> parameters = json_strings(metadata(meta, "parameters"));
    long ny = 0, nx = 0;
    if (std::sscanf(metadata(meta, "input_shape").c_str(), "[%ld, %ld]", &ny, &nx) != 2)
      throw std::runtime_error("cannot read the model's input_shape");
    std::cout << "model: " << parameters.size() << " parameters, input " << ny << " x " << nx << " at "
              << metadata(meta, "pixel_size_nm") << " nm per pixel, heteroagg "
              << unquote(metadata(meta, "heteroagg_version")) << "\n";

    std::vector<float> images = make_batch(batch, ny, nx);
    const std::vector<std::int64_t> shape{batch, ny, nx};
    const Ort::MemoryInfo memory = Ort::MemoryInfo::CreateCpu(OrtArenaAllocator, OrtMemTypeDefault);
    Ort::Value input = Ort::Value::CreateTensor<float>(memory, images.data(), images.size(), shape.data(),
                                                       shape.size());
    const char* input_names[] = {"images"};
    const char* output_names[] = {"theta"};
    std::vector<Ort::Value> outputs = session.Run(Ort::RunOptions{nullptr}, input_names, &input, 1, output_names, 1);
    const float* theta = outputs[0].GetTensorData<float>();
    for (std::int64_t b = 0; b < batch; ++b) {
      std::cout << "image " << b << ":";
      for (std::size_t p = 0; p < parameters.size(); ++p)
        std::cout << " " << parameters[p] << "=" << theta[b * static_cast<std::int64_t>(parameters.size()) + p];
      std::cout << "\n";
    }
  } catch (const std::exception& err) {
    std::cerr << "error: " << err.what() << "\n";
    return 1;
  }
  return 0;
}
