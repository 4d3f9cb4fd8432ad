// unravel._jitload: torch::jit::load, a module's deep copy and its serialization with
// Python's GIL released.
//
// torch.jit.load holds the GIL for the whole deserialization (90-120 ms for a RAVE export),
// copy.deepcopy of a script module for the whole copy (the copy on write before a first
// bend, a streaming model's template), torch.jit.save for the whole serialization, and the model thread of every playing [unravel~]
// needs the GIL once per block: a `load` or a first bend during DSP made them miss a block
// or two.  These do the same work without the GIL; the Python side (unravel.modelcache) wraps
// the results as torch.jit does, and falls back to torch.jit.load, copy.deepcopy and
// torch.jit.save when
// this module is not built.  Built by native/build_jitload.py.
#include <torch/extension.h>
#include <torch/script.h>
#include <sstream>

static py::object jitload_load(const std::string &path, const std::string &device)
{
    torch::jit::Module module;
    {
        py::gil_scoped_release nogil;
        module = torch::jit::load(path, torch::Device(device));
    }
    return py::cast(module);
}

static py::object jitload_copy(const torch::jit::Module &module)
{
    torch::jit::Module copy;
    {
        py::gil_scoped_release nogil;
        copy = module.deepcopy();
    }
    return py::cast(copy);
}

static py::bytes jitload_save(const torch::jit::Module &module)
{
    std::ostringstream out;
    {
        py::gil_scoped_release nogil;
        module.save(out);
    }
    return py::bytes(out.str());
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m)
{
    m.def("load", &jitload_load, "a TorchScript file as a torch._C.ScriptModule, loaded "
        "without the GIL", py::arg("path"), py::arg("device"));
    m.def("copy", &jitload_copy, "a deep copy of a torch._C.ScriptModule, made without the GIL",
        py::arg("module"));
    m.def("save", &jitload_save, "a torch._C.ScriptModule as the bytes of a TorchScript file, "
        "serialized without the GIL", py::arg("module"));
}
