/* cpuid_mask: run a program as if its x86 CPU lacked some instruction sets, at native speed.

   Libraries pick their kernels by the CPUID instruction (onnxruntime's MLAS, numpy, PyTorch,
   oneDNN). Loaded with LD_PRELOAD, this library turns on CPUID faulting for the process
   (arch_prctl ARCH_SET_CPUID; Linux on a CPU with the cpuid_fault flag, also in KVM guests),
   catches the SIGSEGV each CPUID then raises, runs the real CPUID and clears what CPUID_MASK names:

     avx2    AVX-512 (all of it), AVX-VNNI, AMX -> an AVX2-only CPU (Haswell .. Coffee Lake, Zen 1-3)
     novnni  AVX512-VNNI, AVX-VNNI, AMX         -> AVX-512 without VNNI (Skylake-SP/X)
     noamx   AMX, AVX-VNNI                      -> AVX-512 with VNNI (Cascade Lake, Ice Lake, Zen 4)
     sse     AVX, FMA, AVX2 and the above        -> SSE4.2 only

   It runs before main, so everything that reads CPUID afterwards sees the masked set; glibc's
   own dispatch ran before it and is unchanged. Another SIGSEGV handler installed later (Python's
   faulthandler, e.g. pytest's) would take the faults: run pytest with -p no:faulthandler.
   Check what a program sees, e.g. numpy's np.show_runtime().

     gcc -O2 -shared -fPIC -o /tmp/cpuid_mask.so bench/cpuid_mask.c
     CPUID_MASK=avx2 LD_PRELOAD=/tmp/cpuid_mask.so .venv/bin/python bench/int8_speed.py

   docs/onnx.md and docs/benchmarks.md give what was measured with it. */
#define _GNU_SOURCE
#include <cpuid.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <ucontext.h>
#include <unistd.h>

#define ARCH_SET_CPUID 0x1012
#define BIT(n) (1u << (n))

enum { KEEP, AVX2, NOVNNI, NOAMX, SSE };
static int mode = KEEP;

static void mask(unsigned leaf, unsigned sub, unsigned *a, unsigned *b, unsigned *c, unsigned *d) {
    int no_avx512 = mode == AVX2 || mode == SSE;
    if (leaf == 1 && mode == SSE) *c &= ~(BIT(12) | BIT(28) | BIT(29)); /* FMA, AVX, F16C */
    if (leaf == 7 && sub == 0) {
        if (no_avx512) {
            *b &= ~(BIT(16) | BIT(17) | BIT(21) | BIT(26) | BIT(27) | BIT(28) | BIT(30) | BIT(31));
            *c &= ~(BIT(1) | BIT(6) | BIT(11) | BIT(12) | BIT(14));
            *d &= ~(BIT(2) | BIT(3) | BIT(8) | BIT(23));
        }
        if (mode == SSE) *b &= ~BIT(5);      /* AVX2 */
        if (mode == NOVNNI) *c &= ~BIT(11);  /* AVX512-VNNI */
        *d &= ~(BIT(22) | BIT(24) | BIT(25)); /* AMX-BF16, AMX-TILE, AMX-INT8: in every mode */
    }
    if (leaf == 7 && sub == 1) {
        *a &= ~BIT(4); /* AVX-VNNI */
        if (no_avx512) *a &= ~BIT(5); /* AVX512-BF16 */
        *d &= ~(BIT(4) | BIT(5)); /* AVX-VNNI-INT8, AVX-NE-CONVERT */
    }
    if (leaf == 0xd && sub == 0 && no_avx512) *a &= ~0xe0u; /* AVX-512 state components */
}

static void on_fault(int sig, siginfo_t *info, void *context) {
    (void)sig, (void)info;
    greg_t *r = ((ucontext_t *)context)->uc_mcontext.gregs;
    const unsigned char *ip = (const unsigned char *)r[REG_RIP];
    if (ip[0] != 0x0f || ip[1] != 0xa2) { /* not CPUID: a real fault, crash as usual */
        signal(SIGSEGV, SIG_DFL);
        return;
    }
    unsigned leaf = (unsigned)r[REG_RAX], sub = (unsigned)r[REG_RCX], a, b, c, d;
    syscall(SYS_arch_prctl, ARCH_SET_CPUID, 1);
    __cpuid_count(leaf, sub, a, b, c, d);
    syscall(SYS_arch_prctl, ARCH_SET_CPUID, 0);
    mask(leaf, sub, &a, &b, &c, &d);
    r[REG_RAX] = a, r[REG_RBX] = b, r[REG_RCX] = c, r[REG_RDX] = d;
    r[REG_RIP] += 2;
}

__attribute__((constructor)) static void start(void) {
    const char *name = getenv("CPUID_MASK");
    if (!name) return;
    mode = !strcmp(name, "avx2") ? AVX2 : !strcmp(name, "novnni") ? NOVNNI : !strcmp(name, "noamx") ? NOAMX
         : !strcmp(name, "sse") ? SSE : KEEP;
    if (mode == KEEP) return;
    struct sigaction action;
    memset(&action, 0, sizeof action);
    action.sa_sigaction = on_fault;
    action.sa_flags = SA_SIGINFO | SA_NODEFER;
    sigaction(SIGSEGV, &action, 0);
    if (syscall(SYS_arch_prctl, ARCH_SET_CPUID, 0) != 0) {
        static const char message[] = "cpuid_mask: this CPU or kernel has no CPUID faulting\n";
        write(2, message, sizeof message - 1);
        _exit(3);
    }
}
