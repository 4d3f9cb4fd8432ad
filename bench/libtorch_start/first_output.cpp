// The time from nothing to a RAVE model's first output through libtorch alone (no Python),
// as IRCAM's nn~ gets it: what a first path of [unravel~] in C++ could give before Python
// has imported torch (issue 24, start-up).  Built and run by run.sh.
#include <torch/script.h>
#include <cstring>

extern "C" void *first_load(const char *path)
{
    auto *m = new torch::jit::Module(torch::jit::load(path));
    m->eval();
    return m;
}

extern "C" int first_forward(void *module, const float *in, float *out, int n)
{
    c10::InferenceMode guard;
    auto x = torch::from_blob((void *)in, {1, 1, n});
    auto y = ((torch::jit::Module *)module)->forward({x}).toTensor().contiguous();
    std::memcpy(out, y.data_ptr<float>(), sizeof(float) * std::min<int64_t>(n, y.numel()));
    return 0;
}
