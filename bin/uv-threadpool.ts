/**
 * libuv's pool (4 threads by default) runs every file read and write of the daemon, of its codec
 * workers and of the local backends, and the addon's block decodes: with six local backends on
 * separate disks or a NAS, reads from several shards at once would queue behind each other. It
 * is sized when first used, and some of the CLI's imports use it as they load, so this module is
 * the CLI's first import. (On this machine's single disk, 4 and 16 threads measure the same.)
 */
process.env.UV_THREADPOOL_SIZE ??= '16';
