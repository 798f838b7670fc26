// The widget's own type files import their siblings without extensions, which the project's NodeNext
// resolution does not follow, so the two things the portal uses are declared here.
import type { DetailedHTMLProps, HTMLAttributes } from "react";

declare global {
  var $altcha: { algorithms: Map<string, () => Worker> };
}

declare module "react" {
  namespace JSX {
    interface IntrinsicElements {
      "altcha-widget": DetailedHTMLProps<HTMLAttributes<HTMLElement>, HTMLElement> & {
        challenge?: string;
        auto?: "off" | "onfocus" | "onload" | "onsubmit";
        name?: string;
      };
    }
  }
}
