/**
 * Where a server's time goes, from the V8 CPU profile `node --cpu-prof` writes when the process exits:
 * the samples taken within a window (the measured load, not start-up or shutdown) are summed by the
 * frame they were taken in (self time), then by function and by file or package. Used by bench/run.ts
 * for the gateway's allowed path.
 */
import fs from "node:fs";
import path from "node:path";

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number; columnNumber: number };
  children?: number[];
}

interface CpuProfile {
  nodes: ProfileNode[];
  /** Microseconds on the machine's monotonic clock (the one process.hrtime reads). */
  startTime: number;
  endTime: number;
  samples: number[];
  timeDeltas: number[];
}

export interface Share {
  name: string;
  ms: number;
  /** Of the busy time (idle excluded). */
  share: number;
}

export interface ProfileSummary {
  /** Sampled time within the window, and the part of it the main thread was busy. */
  windowMs: number;
  busyMs: number;
  samples: number;
  functions: Share[];
  files: Share[];
  /**
   * Each sample charged to the nearest function of the repository's own code on its stack (the frame
   * itself or the closest caller): what a piece of Portcullis costs with the libraries and native code it
   * calls. Samples with no repository frame are charged to the file or package they ran in.
   */
  repository: Share[];
}

/** V8's pseudo-frames: no JavaScript is running in them. */
const PSEUDO = new Set(["(program)", "(garbage collector)", "(idle)", "(root)"]);

/** A file URL as a package name (node_modules), a path in the repository, or node's own module. */
function fileOf(url: string, root: string, functionName: string): string {
  if (url === "") return PSEUDO.has(functionName) ? functionName : "(native: V8 builtins, C++ bindings)";
  if (url.startsWith("node:")) return url;
  const file = url.startsWith("file://") ? decodeURIComponent(new URL(url).pathname) : url;
  const modules = file.lastIndexOf("/node_modules/");
  if (modules >= 0) {
    const parts = file.slice(modules + "/node_modules/".length).split("/");
    return parts[0]!.startsWith("@") ? `${parts[0]}/${parts[1]}` : parts[0]!;
  }
  return file.startsWith(root) ? path.relative(root, file) : file;
}

/**
 * A function by name and file. No line: the repository's files run transpiled by tsx, so the lines V8
 * reports are not the source's.
 */
function functionOf(node: ProfileNode, root: string): string {
  const { functionName, url } = node.callFrame;
  const name = functionName || "(anonymous)";
  if (url === "") return name;
  return `${name} (${fileOf(url, root, functionName)})`;
}

/** A frame of the repository's own code (not a package, not node's). */
function isRepository(node: ProfileNode, root: string): boolean {
  const { url } = node.callFrame;
  if (!url.startsWith("file://")) return false;
  const file = decodeURIComponent(new URL(url).pathname);
  return file.startsWith(root) && !file.includes("/node_modules/");
}

function top(totals: Map<string, number>, busyUs: number, count: number): Share[] {
  return [...totals]
    .sort((a, b) => b[1] - a[1])
    .slice(0, count)
    .map(([name, us]) => ({ name, ms: us / 1000, share: busyUs > 0 ? us / busyUs : 0 }));
}

/**
 * Sums the samples of the profile in `file` taken between `fromUs` and `toUs` (microseconds on the
 * monotonic clock; the whole profile without them) into the top functions and files by self time.
 */
export function summariseProfile(
  file: string,
  root: string,
  window: { fromUs?: number; toUs?: number } = {},
  counts = { functions: 15, files: 10, repository: 15 },
): ProfileSummary {
  const profile = JSON.parse(fs.readFileSync(file, "utf8")) as CpuProfile;
  const byId = new Map(profile.nodes.map((node) => [node.id, node]));
  const parents = new Map<number, ProfileNode>();
  for (const node of profile.nodes) for (const child of node.children ?? []) parents.set(child, node);
  const owners = new Map<number, string>();
  const ownerOf = (node: ProfileNode): string => {
    let owner = owners.get(node.id);
    if (owner === undefined) {
      let frame: ProfileNode | undefined = node;
      while (frame && !isRepository(frame, root)) frame = parents.get(frame.id);
      owner = frame
        ? functionOf(frame, root)
        : `(no repository frame) ${fileOf(node.callFrame.url, root, node.callFrame.functionName)}`;
      owners.set(node.id, owner);
    }
    return owner;
  };
  const functions = new Map<string, number>();
  const files = new Map<string, number>();
  const repository = new Map<string, number>();
  let at = profile.startTime;
  let windowUs = 0;
  let busyUs = 0;
  let samples = 0;
  for (let i = 0; i < profile.samples.length; i += 1) {
    // Each delta is the time since the previous sample: the time the previous interval is charged to
    // is approximated by the sample that ends it, as Chrome's DevTools do.
    const delta = profile.timeDeltas[i] ?? 0;
    at += delta;
    if (
      (window.fromUs !== undefined && at < window.fromUs) ||
      (window.toUs !== undefined && at > window.toUs)
    )
      continue;
    const node = byId.get(profile.samples[i]!);
    if (!node) continue;
    samples += 1;
    windowUs += delta;
    if (node.callFrame.functionName === "(idle)") continue;
    busyUs += delta;
    const name = functionOf(node, root);
    functions.set(name, (functions.get(name) ?? 0) + delta);
    const fileName = fileOf(node.callFrame.url, root, node.callFrame.functionName);
    files.set(fileName, (files.get(fileName) ?? 0) + delta);
    const owner = ownerOf(node);
    repository.set(owner, (repository.get(owner) ?? 0) + delta);
  }
  return {
    windowMs: windowUs / 1000,
    busyMs: busyUs / 1000,
    samples,
    functions: top(functions, busyUs, counts.functions),
    files: top(files, busyUs, counts.files),
    repository: top(repository, busyUs, counts.repository),
  };
}
