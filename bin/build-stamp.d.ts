// Types of bin/build-stamp.js (plain JavaScript: it runs before anything is compiled), for the tests.
/** The command that rebuilds `dist/`. */
export declare const REBUILD_COMMAND: string;
/** File of `dist/` that holds the stamp. */
export declare const STAMP_FILE: string;
/** The files `dist/` is compiled from, relative to `root`, sorted. */
export declare function sourceFiles(root: string): string[];
/** The sources' stamp (16 hex digits), or null without `src/`. */
export declare function sourceHash(root: string): string | null;
/** SHA-256 over `name NUL content NUL` of each file, first 16 hex digits. */
export declare function hashFiles(dir: string, names: readonly string[]): string;
/** The stamp `dist/` was built with, or null. */
export declare function readStamp(root: string): string | null;
/** Why `dist/` must not run, or null. */
export declare function staleBuild(root: string): string | null;
