"""Issued tokens with a shape of their own, as their issuers document them and as the field's
maintained rule sets describe them (gitleaks' default configuration, detect-secrets' plugins).

Each entry: (redaction type, pattern, hints). The type groups providers by family, so a shard
has one count column per family rather than one per vendor; the pattern's group `secret` (or
the whole match) is what gets replaced; a hint is a lower-case string that a line must hold
for the pattern to run there (the hints of all rules are looked for in one pass, `triggers.py`).
"""

from __future__ import annotations

START = r"(?<![\w\-])"  # a token starts a word
END = r"(?![\w\-])"

TOKEN_FORMATS: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    # cloud providers
    ("cloud_token", START + r"LTAI[A-Za-z0-9]{20}" + END, ("ltai",)),  # Alibaba access key id
    ("cloud_token", START + r"do[opr]_v1_[a-f0-9]{64}" + END, ("_v1_",)),  # DigitalOcean
    ("cloud_token", START + r"HRKU-AA[\w\-]{58}" + END, ("hrku-",)),  # Heroku
    # payment processors and shops
    ("payment_token", START + r"(?:sk|rk)_(?:live|test|prod)_[A-Za-z0-9]{10,247}" + END,
     ("_live_", "_test_", "_prod_")),  # Stripe
    ("payment_token", START + r"(?:sq0atp-[\w\-]{22,60}|sq0csp-[\w\-]{43}|EAAA[\w\-]{22,60})" + END,
     ("sq0atp-", "sq0csp-", "eaaa")),  # Square
    ("payment_token", START + r"shp(?:at|ss|ca|pa)_[a-fA-F0-9]{32}" + END, ("shp",)),
    ("payment_token", r"access_token\$production\$[0-9a-z]{16}\$[0-9a-f]{32}", ("$production$",)),  # Braintree
    # chat and messaging
    ("chat_token", r"https://(?:ptb\.|canary\.)?discord(?:app)?\.com/api/webhooks/(?P<secret>\d+/[\w\-]+)", ("discord",)),
    ("chat_token", r"(?<![\w\-:])\d{5,16}:A[\w\-]{34}" + END, (":a",)),  # Telegram bot
    ("chat_token", START + r"SK[0-9a-fA-F]{32}" + END, ("sk",)),  # Twilio API key
    ("chat_token", r"https://[\w\-]+\.webhook\.office\.com/webhookb2/(?P<secret>[^\s\"'<>]+)", ("webhook.office.com",)),
    ("slack_token", START + r"(?i:xapp)-\d-[A-Za-z0-9]+-\d+-[A-Za-z0-9]+" + END, ("xapp-",)),
    # CI, infrastructure and observability
    ("ci_token", START + r"[A-Za-z0-9]{14}\.atlasv1\.[\w\-=]{60,70}" + END, ("atlasv1",)),  # Terraform Cloud
    ("ci_token", START + r"dp\.(?:pt|st|sa|ct|scim|audit)\.[A-Za-z0-9]{40,44}" + END, ("dp.",)),  # Doppler
    ("ci_token", START + r"pul-[a-f0-9]{40}" + END, ("pul-",)),  # Pulumi
    ("ci_token", START + r"dapi[a-f0-9]{32}(?:-\d)?" + END, ("dapi",)),  # Databricks
    ("ci_token", START + r"(?:glsa_[A-Za-z0-9]{32}_[A-Fa-f0-9]{8}|glc_[A-Za-z0-9+/]{32,400}={0,3})" + END,
     ("gl",)),  # Grafana
    ("ci_token", START + r"sntry[us]_[\w+/=.\-]{40,}" + END, ("sntry",)),  # Sentry
    ("ci_token", START + r"dt0c01\.[A-Za-z0-9]{24}\.[A-Za-z0-9]{64}" + END, ("dt0c01.",)),  # Dynatrace
    ("ci_token", START + r"PMAK-[a-fA-F0-9]{24}-[a-fA-F0-9]{34}" + END, ("pmak-",)),  # Postman
    ("ci_token", START + r"(?:hvs\.[\w\-]{90,120}|hvb\.[\w\-]{138,300})" + END, ("hvs.", "hvb.")),  # Vault
    # VCS (GitHub has its own type)
    ("gitlab_token", START + r"gl(?:pat|ptt|rt|dt|ft|imt|agent|oas|soat|cbt|ffct)-[\w\-]{20,}" + END,
     ("gl",)),
    # package registries
    ("registry_token", START + r"npm_[A-Za-z0-9]{36}" + END, ("npm_",)),
    ("registry_token", START + r"pypi-AgEIcHlwaS5vcmc[\w\-]{50,}", ("pypi-ageichlwas5vcmc",)),
    ("registry_token", START + r"rubygems_[a-f0-9]{48}" + END, ("rubygems_",)),
    ("registry_token", START + r"dckr_pat_[\w\-]{27}" + END, ("dckr_pat_",)),  # Docker Hub
    ("registry_token", START + r"oy2[a-z0-9]{43}" + END, ("oy2",)),  # NuGet
    ("registry_token", START + r"AKC[A-Za-z0-9]{10,}" + END, ("akc",)),  # Artifactory (detect-secrets)
    # AI and SaaS APIs
    ("api_token", START + r"(?:sk-(?:proj|svcacct|admin)-[\w\-]{40,}|sk-[A-Za-z0-9]{20}T3BlbkFJ[A-Za-z0-9]{20})" + END,
     ("sk-",)),  # OpenAI
    ("api_token", START + r"sk-ant-(?:api|admin)\d\d-[\w\-]{80,}" + END, ("sk-",)),  # Anthropic
    ("api_token", START + r"(?:hf_|api_org_)[A-Za-z]{34}" + END, ("hf_", "api_org_")),  # Hugging Face
    ("api_token", START + r"SG\.[\w\-]{22}\.[\w\-]{43}" + END, ("sg.",)),  # SendGrid
    ("api_token", START + r"key-[a-f0-9]{32}" + END, ("key-",)),  # Mailgun
    ("api_token", START + r"[a-f0-9]{32}-us\d{1,2}" + END, ("-us",)),  # Mailchimp
    ("api_token", START + r"lin_(?:api|oauth)_[A-Za-z0-9]{40}" + END, ("lin_",)),  # Linear
    ("api_token", START + r"NR(?:AK|II|JS|RA)-[A-Za-z0-9]{19,32}" + END, ("nr",)),
    ("api_token", START + r"xkeysib-[a-f0-9]{64}-[A-Za-z0-9]{16}" + END, ("xkeysib-",)),  # Brevo (Sendinblue)
    # private keys other than PEM
    ("private_key", r"AGE-SECRET-KEY-1[QPZRY9X8GF2TVDW0S3JN54KHCE6MUA7L]{58}", ("age-secret-key-",)),
)
