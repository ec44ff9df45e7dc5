// Types of bin/open-files.js (plain JavaScript: it runs before anything is loaded), for the tests.
/** The least soft limit of open files the launchers accept. */
export declare const MIN_OPEN_FILES: number;
/** The soft limit of open files from the text of /proc/<pid>/limits, or null when unlimited or not found. */
export declare function softOpenFiles(limits: string): number | null;
/** Why this process cannot run with its open-files limit, or null when it can (or it cannot be read). */
export declare function openFilesProblem(name: string, limits?: string | null): string | null;
