/* readtax._native, the compiled core: the per-byte and per-read loops that numpy could only do
 * in several whole-buffer passes, for the readers (fastx, labels), the store (pack and batch
 * reads), the sampler and subset. This file holds the method table and the module's init; the
 * kernels live by concern in reader.c, codecs.c, permute.c and pack.c, and
 * readtax/_native.pyi documents their signatures.
 */
#include "readtax.h"

static PyMethodDef methods[] = {
    {"fasta_index", (PyCFunction)(void (*)(void))fasta_index, METH_VARARGS | METH_KEYWORDS,
     "Index the FASTA records of a buffer."},
    {"fasta_bases", (PyCFunction)(void (*)(void))fasta_bases, METH_VARARGS | METH_KEYWORDS,
     "Copy and normalise the bases of FASTA records."},
    {"fasta_pack", (PyCFunction)(void (*)(void))fasta_pack, METH_VARARGS | METH_KEYWORDS,
     "2-bit encode FASTA records in place."},
    {"fastq_index", (PyCFunction)(void (*)(void))fastq_index, METH_VARARGS | METH_KEYWORDS,
     "Index the FASTQ records of a buffer."},
    {"copy_bases", (PyCFunction)(void (*)(void))copy_bases, METH_VARARGS | METH_KEYWORDS,
     "Copy and normalise single-line sequences."},
    {"lbl_fields", (PyCFunction)(void (*)(void))lbl_fields, METH_VARARGS | METH_KEYWORDS,
     "Parse class and tax ids of lbl headers."},
    {"gather", (PyCFunction)(void (*)(void))gather, METH_VARARGS | METH_KEYWORDS,
     "Concatenate byte ranges of a buffer."},
    {"select_reads", (PyCFunction)(void (*)(void))select_reads, METH_VARARGS | METH_KEYWORDS,
     "Selection sampling of two disjoint subsets."},
    {"pack_2bit", (PyCFunction)(void (*)(void))pack_2bit, METH_VARARGS | METH_KEYWORDS,
     "2-bit encode reads, each starting on a byte."},
    {"repack_2bit", (PyCFunction)(void (*)(void))repack_2bit, METH_VARARGS | METH_KEYWORDS,
     "Join byte-aligned 2-bit reads into one stream."},
    {"front_code", (PyCFunction)(void (*)(void))front_code, METH_VARARGS | METH_KEYWORDS,
     "Front-code a block of ids."},
    {"feistel", (PyCFunction)(void (*)(void))feistel, METH_VARARGS | METH_KEYWORDS,
     "Keyed Feistel permutation with cycle-walking."},
    {"bucket_layout", (PyCFunction)(void (*)(void))bucket_layout, METH_VARARGS | METH_KEYWORDS,
     "Class order and physical order of a bucket."},
    {"write_parts", (PyCFunction)(void (*)(void))write_parts, METH_VARARGS | METH_KEYWORDS,
     "Write a bucket-major run file from its parts."},
    {"split_batch", (PyCFunction)(void (*)(void))split_batch, METH_VARARGS | METH_KEYWORDS,
     "Spread a pack batch over the buckets."},
    {"pread_ranges", (PyCFunction)(void (*)(void))pread_ranges, METH_VARARGS | METH_KEYWORDS,
     "Read file ranges into a buffer (pread)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "readtax._native", "readtax's compiled loops.", -1, methods,
    NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__native(void) {
    return PyModule_Create(&module);
}
