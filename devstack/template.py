"""The stack's config files are templates in infra/: a placeholder is an upper-case name in braces
after a dollar sign; lower-case ones (nginx's own variables) are left alone."""

import re

PLACEHOLDER = re.compile(r"\$\{([A-Z][A-Z0-9_]*)\}")


def render(template: str, substitutions: dict[str, str]) -> str:
    """Fill every placeholder; one that `substitutions` lacks is an error, never left in."""
    unknown = sorted(set(PLACEHOLDER.findall(template)) - set(substitutions))
    if unknown:
        raise ValueError(f"the template names settings this script does not know: {', '.join(unknown)}")
    return PLACEHOLDER.sub(lambda match: substitutions[match.group(1)], template)
