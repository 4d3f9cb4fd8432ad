# unravel — the two commands: `make demo` and `make test`. Both run `make setup` first.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
VPY := $(VENV)/bin/python
PD_MIN := 0.54

.PHONY: setup system venv native jitload firstpath package dist browser xvfb demo test clean

setup: system venv native browser xvfb

# System packages: Pure Data >= 0.54 (0.55 from bookworm-backports), cmake, a C compiler, libsndfile.
system:
	@need=""; \
	if ! command -v pd >/dev/null || ! pd -version 2>&1 | awk '{split($$1,v,"[-.]"); exit !(v[2]>0 || v[3]>=54)}'; then need="$$need pd"; fi; \
	[ -f /usr/include/pd/m_pd.h ] || need="$$need pd-dev"; \
	command -v cmake >/dev/null || need="$$need cmake"; \
	command -v cc >/dev/null || need="$$need cc"; \
	ldconfig -p 2>/dev/null | grep -q libsndfile.so || need="$$need libsndfile"; \
	if [ -z "$$need" ]; then exit 0; fi; \
	echo "setup: missing:$$need"; \
	if [ "$$(id -u)" = 0 ] && [ -f /etc/debian_version ] && command -v apt-get >/dev/null; then \
	  . /etc/os-release; \
	  echo "deb http://deb.debian.org/debian $${VERSION_CODENAME}-backports main" > /etc/apt/sources.list.d/unravel-backports.list; \
	  apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq -t $${VERSION_CODENAME}-backports puredata-core puredata-dev && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq cmake build-essential libsndfile1; \
	else \
	  echo "setup: install Pure Data >= $(PD_MIN) with its headers (Debian: puredata-core puredata-dev from bookworm-backports)," ; \
	  echo "       cmake, a C compiler and libsndfile, then run make again."; exit 1; \
	fi

# The venv: the package in editable mode with its dev and app extras; torch pinned by constraints.txt.
venv: $(VENV)/.stamp
$(VENV)/.stamp: pyproject.toml constraints.txt
	[ -x $(VPY) ] || $(PYTHON) -m venv $(VENV)
	$(VPY) -m pip install -q -c constraints.txt -e '.[dev,app]'
	touch $@

# The Pd external (issue 3): build/unravel/ is a complete Pd package folder. It works copied
# anywhere Pd looks for libraries (its unravel.cfg names this clone's .venv python; a pip user
# writes it with `unravel pd-install`).
package: native
native: venv jitload firstpath
	@if [ -f CMakeLists.txt ]; then \
	  cmake -S . -B build -DUNRAVEL_PYTHON=$(abspath $(VPY)) -DUNRAVEL_FIRST=$(abspath $(FIRSTPATH)) >/dev/null && cmake --build build -j2 >/dev/null; \
	fi

# unravel._jitload (native/jitload.cpp): model files loaded without holding Python's GIL, so
# that a `load` never stops the other objects' audio. Optional: without it torch.jit.load.
JITLOAD := pybackend/unravel/.jitload.stamp
jitload: $(JITLOAD)
$(JITLOAD): native/jitload.cpp native/build_jitload.py $(VENV)/.stamp
	@mkdir -p build; $(VPY) native/build_jitload.py -q >/dev/null 2>build/jitload.log || \
	  { echo "setup: unravel._jitload did not build (see build/jitload.log); models load with torch.jit.load"; }
	@touch $@

# unravel_first.so (native/firstpath_torch.cpp): a live [unravel~] plays its model through
# libtorch alone from Pd's start, until Python has imported torch. Optional: without it the
# object is silent until then. CMake copies it into the package folder.
FIRSTPATH := build/first/unravel_first.so
firstpath: build/first/.stamp
build/first/.stamp: native/firstpath_torch.cpp native/build_firstpath.py $(VENV)/.stamp
	@mkdir -p build/first; $(VPY) native/build_firstpath.py $(FIRSTPATH) >build/firstpath.log 2>&1 || \
	  { rm -f $(FIRSTPATH); echo "setup: unravel_first.so did not build (see build/firstpath.log); a live [unravel~] is silent until torch is imported"; }
	@touch $@

# Two deken packages of the library folder for this platform, with their .sha256 and object
# lists (tools/dek.py says what is in them):
#   dist/unravel[v<version>](<OS>-<cpu>-32).dek: the folder with its own Python runtime
#     (python/: libpython, the standard library, unravel[diffusion] and what it requires: torch
#     CPU, numpy, soundfile ...), copied by tools/pyruntime.py from build/dist/venv, a venv that
#     holds only the package (no dev or app extras; torch pinned by constraints.txt);
#   dist/unravel[v<version>-nopython](<OS>-<cpu>-32).dek: the folder only (about 1 MB), without
#     unravel_first.so (built for the runtime's torch, it goes into the full package only).
# Both are built apart, in build/dist, with $(PYTHON) (its headers and libpython), not .venv.
dist: system
	cmake -S . -B build/dist -DUNRAVEL_PYTHON=$$(command -v $(PYTHON)) -DUNRAVEL_FIRST= >/dev/null && cmake --build build/dist -j2 >/dev/null
	$(PYTHON) tools/dek.py build/dist/unravel dist
	[ -x build/dist/venv/bin/python ] || $(PYTHON) -m venv build/dist/venv
	build/dist/venv/bin/python -m pip install -q -c constraints.txt '.[diffusion]'
	build/dist/venv/bin/python native/build_firstpath.py build/dist/first/unravel_first.so
	cmake -S . -B build/dist -DUNRAVEL_FIRST=$(abspath build/dist/first/unravel_first.so) >/dev/null && cmake --build build/dist -j2 >/dev/null
	build/dist/venv/bin/python tools/pyruntime.py build/dist/python
	$(PYTHON) tools/dek.py build/dist/unravel dist --runtime build/dist/python

# Chromium for the web page's browser test (Debian's package: Playwright's own download is not
# used). Without it the browser test skips and says why.
browser:
	@[ -x /usr/bin/chromium ] && exit 0; \
	if [ "$$(id -u)" = 0 ] && [ -f /etc/debian_version ] && command -v apt-get >/dev/null; then \
	  echo "setup: installing chromium (for the browser test)"; \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null 2>&1 || \
	  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; } || \
	  echo "setup: could not install chromium; the browser test will be skipped"; \
	else \
	  echo "setup: no /usr/bin/chromium (Debian: apt-get install chromium); the browser test will be skipped"; \
	fi

# Xvfb and xwd for the GUI test (tests/test_pd_gui.py opens the help patches in Pd's GUI on a
# virtual display and saves screenshots into tests/_out/). Without them that test skips.
xvfb:
	@command -v Xvfb >/dev/null && command -v xwd >/dev/null && exit 0; \
	if [ "$$(id -u)" = 0 ] && [ -f /etc/debian_version ] && command -v apt-get >/dev/null; then \
	  echo "setup: installing xvfb and x11-apps (for the GUI test)"; \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq xvfb x11-apps >/dev/null 2>&1 || \
	  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq xvfb x11-apps >/dev/null; } || \
	  echo "setup: could not install xvfb; the GUI test will be skipped"; \
	else \
	  echo "setup: no Xvfb/xwd (Debian: apt-get install xvfb x11-apps); the GUI test will be skipped"; \
	fi

# The headless Pd render of pd/examples/3-render.pd (encode, generate, bend, decode in Pd):
# writes out/demo.wav. `python -m unravel.demo` does the same steps without Pd.
demo: setup
	sh build/unravel/examples/render.sh out

test: setup
	$(VPY) -m ruff check -q pybackend tests tools bench
	$(VPY) -m pytest -q

clean:
	rm -rf build out dist pybackend/unravel/_jitload*.so $(JITLOAD)
