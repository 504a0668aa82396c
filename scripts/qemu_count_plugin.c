/* qemu TCG plugin of scripts/qemu_count.py: counts what an ARM program executes under qemu-user.
 *
 * For every translated block it keeps the block's address, instruction count, code bytes and how
 * often it ran. Two ways to count the runs:
 *   - default: qemu adds 1 to the block's counter inline (no call per execution; fastest, but
 *     the counters are shared by all guest threads, so counts of threaded programs may lose a
 *     few increments);
 *   - threads=1: a callback per execution receives the vCPU (in qemu-user, the guest thread)
 *     and counts per thread, without races (each vCPU only touches its own counters).
 * At exit it writes, to out=FILE, one line per executed block "block VADDR INSNS EXECS CODEHEX",
 * with threads=1 followed by the block's runs per thread "THREAD:RUNS,THREAD:RUNS...", then with
 * threads=1 one line per thread "thread INDEX INSTRUCTIONS", and "total INSTRUCTIONS".
 *
 * The plugin API (version 1, as in qemu 7.2) is declared here, so that no qemu headers are
 * needed to build it: cc -shared -fPIC -O2 -o count.so qemu_count_plugin.c */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef uint64_t plugin_id;
struct qemu_plugin_tb;
struct qemu_plugin_insn;
enum inline_op { INLINE_ADD_U64 };
enum cb_flags { CB_NO_REGS };
typedef void (*tb_trans_cb)(plugin_id, struct qemu_plugin_tb *);
typedef void (*exec_cb)(unsigned int vcpu, void *udata);
typedef void (*exit_cb)(plugin_id, void *);

void qemu_plugin_register_vcpu_tb_trans_cb(plugin_id, tb_trans_cb);
void qemu_plugin_register_vcpu_tb_exec_inline(struct qemu_plugin_tb *, enum inline_op, void *, uint64_t);
void qemu_plugin_register_vcpu_tb_exec_cb(struct qemu_plugin_tb *, exec_cb, enum cb_flags, void *);
void qemu_plugin_register_atexit_cb(plugin_id, exit_cb, void *);
size_t qemu_plugin_tb_n_insns(const struct qemu_plugin_tb *);
uint64_t qemu_plugin_tb_vaddr(const struct qemu_plugin_tb *);
struct qemu_plugin_insn *qemu_plugin_tb_get_insn(const struct qemu_plugin_tb *, size_t);
const void *qemu_plugin_insn_data(const struct qemu_plugin_insn *);
size_t qemu_plugin_insn_size(const struct qemu_plugin_insn *);

__attribute__((visibility("default"))) int qemu_plugin_version = 1;

/* Guest threads counted apart; more are counted with the last one. */
#define MAX_THREADS 64

struct block {
    uint64_t vaddr, insns;
    uint64_t runs;                   /* inline mode */
    uint64_t *thread_runs;           /* threads mode: MAX_THREADS counters, one per vCPU */
    size_t bytes;
    unsigned char *code;
    struct block *next;
};

static struct block *all_blocks;
static pthread_mutex_t all_lock = PTHREAD_MUTEX_INITIALIZER;
static const char *out_file;
static int per_thread;

static void ran(unsigned int vcpu, void *udata) {
    struct block *b = udata;
    b->thread_runs[vcpu < MAX_THREADS ? vcpu : MAX_THREADS - 1]++;
}

static void translated(plugin_id id, struct qemu_plugin_tb *tb) {
    (void)id;
    struct block *b = calloc(1, sizeof *b);
    if (!b) return;
    if (per_thread && !(b->thread_runs = calloc(MAX_THREADS, sizeof *b->thread_runs))) {
        free(b);
        return;
    }
    b->vaddr = qemu_plugin_tb_vaddr(tb);
    b->insns = qemu_plugin_tb_n_insns(tb);
    for (size_t i = 0; i < b->insns; i++) b->bytes += qemu_plugin_insn_size(qemu_plugin_tb_get_insn(tb, i));
    b->code = malloc(b->bytes + 1);
    size_t at = 0;
    for (size_t i = 0; b->code && i < b->insns; i++) {
        const struct qemu_plugin_insn *insn = qemu_plugin_tb_get_insn(tb, i);
        size_t n = qemu_plugin_insn_size(insn);
        memcpy(b->code + at, qemu_plugin_insn_data(insn), n);
        at += n;
    }
    pthread_mutex_lock(&all_lock);
    b->next = all_blocks;
    all_blocks = b;
    pthread_mutex_unlock(&all_lock);
    if (per_thread)
        qemu_plugin_register_vcpu_tb_exec_cb(tb, ran, CB_NO_REGS, b);
    else
        qemu_plugin_register_vcpu_tb_exec_inline(tb, INLINE_ADD_U64, &b->runs, 1);
}

static void write_counts(plugin_id id, void *unused) {
    (void)id, (void)unused;
    FILE *f = out_file ? fopen(out_file, "w") : stderr;
    if (!f) return;
    uint64_t total = 0, threads[MAX_THREADS] = {0};
    for (struct block *b = all_blocks; b; b = b->next) {
        uint64_t runs = b->runs;
        for (int t = 0; b->thread_runs && t < MAX_THREADS; t++) {
            runs += b->thread_runs[t];
            threads[t] += b->thread_runs[t] * b->insns;
        }
        if (!runs) continue;
        fprintf(f, "block %llx %llu %llu ", (unsigned long long)b->vaddr, (unsigned long long)b->insns,
                (unsigned long long)runs);
        for (size_t i = 0; b->code && i < b->bytes; i++) fprintf(f, "%02x", b->code[i]);
        for (int t = 0, first = 1; b->thread_runs && t < MAX_THREADS; t++) {
            if (!b->thread_runs[t]) continue;
            fprintf(f, "%c%d:%llu", first ? ' ' : ',', t, (unsigned long long)b->thread_runs[t]);
            first = 0;
        }
        fputc('\n', f);
        total += runs * b->insns;
    }
    for (int t = 0; per_thread && t < MAX_THREADS; t++)
        if (threads[t]) fprintf(f, "thread %d %llu\n", t, (unsigned long long)threads[t]);
    fprintf(f, "total %llu\n", (unsigned long long)total);
    if (f != stderr) fclose(f);
}

__attribute__((visibility("default"))) int qemu_plugin_install(plugin_id id, const void *info, int argc,
                                                               char **argv) {
    (void)info;
    for (int i = 0; i < argc; i++) {
        if (!strncmp(argv[i], "out=", 4)) out_file = argv[i] + 4;
        if (!strcmp(argv[i], "threads=1")) per_thread = 1;
    }
    qemu_plugin_register_vcpu_tb_trans_cb(id, translated);
    qemu_plugin_register_atexit_cb(id, write_counts, NULL);
    return 0;
}
