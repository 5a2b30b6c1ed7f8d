"""The built-in rules read a reason in the words a postmaster of any common language of bounces
would use, not only in the phrasings of the labelled files (issue 18: rules that generalise).

Each category's cases are written from its vocabulary (the thing named, what is wrong with it,
synonyms, inflections, either word order, with and without accents) in English, German,
French, Spanish, Portuguese, Italian, Chinese and Japanese; none of them is a row of a data
file. Each is tried with a code that would say otherwise (``550``: bad-mailbox), and with no
code at all. Near phrasings of another category keep theirs, so that a class cannot grow past
what it means.
"""

from __future__ import annotations

import pytest

from mta_logging.classify import bounce_category

VOCABULARY: dict[str, list[str]] = {
    "bad-mailbox": [
        "mailbox unavailable", "mailbox not available", "no such mailbox", "Mailbox does not exist",
        "mailbox not found", "user account does not exist", "addressee unknown",
        "Unknown local user", "unknown or illegal alias", "Requested mailbox name invalid",
        "the email address you entered couldn't be found",
        "Postfach nicht vorhanden", "Empfänger unbekannt", "Empfaenger unbekannt",
        "Unbekannter Empfänger", "Das Postfach existiert nicht", "Empfängeradresse ungültig",
        "Mailbox nicht gefunden",
        "boîte inconnue", "boite inconnue", "boîte aux lettres inexistante", "adresse inconnue",
        "destinataire inconnu", "utilisateur inexistant", "cette adresse n'existe pas",
        "boîte aux lettres introuvable",
        "usuario desconocido", "el buzón no existe", "buzón inexistente",
        "destinatario desconocido", "la dirección de correo no existe", "buzon no encontrado",
        "usuário desconhecido", "destinatário desconhecido", "endereço inexistente",
        "a conta de e-mail não existe", "caixa postal inexistente",
        "utente sconosciuto", "casella inesistente", "indirizzo inesistente",
        "la casella di posta non esiste", "utente non trovato",
        "用户不存在", "收件人不存在", "邮箱不存在", "帳號不存在",
        "宛先のメールアドレスは存在しません", "ユーザーが見つかりません",
        "そのようなユーザーはいません",
    ],
    "quota-issues": [
        "mailbox is full", "recipient's mailbox is full", "mailbox has reached its maximum size",
        "the mailbox has exceeded the maximum size", "Mailbox storage exceeded",
        "mailbox has no free space",
        "Postfach voll", "Postfach hat die maximale Größe erreicht", "Speicherplatz erschöpft",
        "Quota überschritten",
        "boîte pleine", "boîte aux lettres pleine", "quota dépassé",
        "espace de stockage insuffisant",
        "buzón lleno", "cuota excedida", "el buzón está lleno", "cuota superada",
        "caixa postal cheia", "cota excedida", "caixa de correio cheia", "caixa postal lotada",
        "casella piena", "quota superata", "spazio esaurito", "la casella è piena",
        "邮箱已满", "邮箱空间不足", "收件人邮箱已满", "信箱已滿",
        "メールボックスがいっぱいです", "容量オーバー", "メールボックスの容量を超えています",
    ],
    "inactive-mailbox": [
        "account has been disabled", "mailbox suspended", "this account is inactive",
        "Konto deaktiviert", "Postfach gesperrt", "Das Konto wurde deaktiviert",
        "compte désactivé", "boîte désactivée", "compte suspendu", "compte desactive",
        "cuenta desactivada", "cuenta suspendida", "buzón deshabilitado",
        "conta desativada", "conta suspensa", "caixa postal desativada", "conta bloqueada",
        "account disattivato", "casella disabilitata", "casella sospesa",
        "账户已停用", "邮箱已冻结", "账号被冻结", "邮箱已被禁用",
        "アカウントは停止されています", "このアカウントは無効です",
    ],
    "bad-domain": [
        "domain name not resolvable", "Domain existiert nicht", "Die Domain existiert nicht",
        "domaine inexistant", "domaine inconnu", "dominio inexistente", "el dominio no existe",
        "domínio inexistente", "dominio inesistente", "域名不存在", "ドメインが存在しません",
    ],
    "invalid-sender": [
        "Absender unbekannt", "expéditeur invalide", "remitente no válido",
        "remetente inválido", "mittente sconosciuto", "发件人不存在",
    ],
    "spam-related": [
        "pourriel", "courrier indésirable", "correo no deseado", "e-mail indesejado",
        "posta indesiderata", "垃圾邮件", "迷惑メール", "スパムと判定されました",
        "IP auf schwarzer Liste", "adresse IP sur liste noire", "IP en lista negra",
        "IP na lista negra", "IP in lista nera", "IP在黑名单中", "ブラックリストに登録されています",
    ],
    "virus-related": [
        "Virus gefunden", "virus détecté", "vírus encontrado", "邮件含有病毒",
        "ウイルスが検出されました",
    ],
    "content-related": [
        "Nachricht zu groß", "Die Nachricht ist zu gross", "message trop volumineux",
        "la taille du message dépasse la limite", "mensaje demasiado grande",
        "mensagem muito grande", "messaggio troppo grande", "邮件过大", "邮件大小超过限制",
        "メールサイズが大きすぎます",
    ],
    "policy-related": [
        "zu viele Verbindungen", "trop de connexions", "demasiadas conexiones",
        "troppe connessioni", "连接数过多", "违反策略",
    ],
    "relaying-issues": [
        "relais refusé", "relayage interdit", "Relaying nicht erlaubt", "relay no permitido",
        "relay não permitido", "relay non consentito", "不允许转发",
    ],
}

CASES = [(text, category) for category, texts in VOCABULARY.items() for text in texts]


@pytest.mark.parametrize(("text", "category"), CASES)
def test_a_reason_in_any_common_words_gets_its_category(text: str, category: str) -> None:
    code = 552 if category == "quota-issues" else 550
    assert bounce_category(code, None, text) == category
    assert bounce_category(None, None, text) == category


@pytest.mark.parametrize(("text", "category"), [
    # the mailbox named, but full, closed or of the sender: not a missing one
    ("Postfach voll", "quota-issues"),
    ("casella disabilitata", "inactive-mailbox"),
    ("Absender unbekannt", "invalid-sender"),
    # the domain, not the mailbox, is missing
    ("el dominio no existe", "bad-domain"),
    # a size of the mailbox is its quota, a size of the message the content
    ("Postfach hat die maximale Größe erreicht", "quota-issues"),
    ("la taille du message dépasse la limite", "content-related"),
    # "zu viele Nachrichten" (too many messages in the mailbox) is the quota it always was
    ("zu viele Nachrichten", "quota-issues"),
    # a reason in the reply wins over a lead-in in another language
    ("Nachricht abgelehnt: Postfach voll", "quota-issues"),
    ("Mensaje rechazado: usuario desconocido", "bad-mailbox"),
])
def test_near_phrasings_keep_their_own_category(text: str, category: str) -> None:
    assert bounce_category(550, None, text) == category


def test_wrapped_replies_in_other_languages_are_read_by_their_words() -> None:
    text = ("SMTP error from remote mail server after RCPT TO:<anna@example.de>: "
            "host mx.example.de [192.0.2.7]: 550 Empfänger unbekannt")
    assert bounce_category(None, None, text) == "bad-mailbox"
    text = ("host mx.example.fr[192.0.2.8] said: 452 boîte aux lettres pleine"
            " (in reply to RCPT TO command)")
    assert bounce_category(None, None, text) == "quota-issues"


@pytest.mark.parametrize(("text", "category"), [
    # the mailbox named by a relative clause, then what is wrong with it
    ("The mailbox you are trying to reach has been suspended", "inactive-mailbox"),
    ("The address you wrote to is currently locked", "inactive-mailbox"),
    ("The account you tried to contact does not exist", "bad-mailbox"),
    # a recipient without an account, not of this system, not verifiable
    ("This person doesn't have a mailbox on this system", "bad-mailbox"),
    ("She is not a user of this host", "bad-mailbox"),
    ("Recipient address could not be validated", "bad-mailbox"),
    ("user lookup in the alias table failed", "bad-mailbox"),
    ("Mailbox presently unavailable", "bad-mailbox"),
    # the sender, not the recipient, cannot be verified
    ("Sender address could not be verified", "invalid-sender"),
    # a list of senders the receiver accepts
    ("Your address is not on the list of approved senders", "policy-related"),
    ("Rejected: allowed-sender policy", "policy-related"),
    # the protocol, the set-up and the message
    ("Say hello first, please", "protocol-errors"),
    ("Temporary config error, try again", "bad-configuration"),
    ("Too many attachments in this message", "content-related"),
    ("The number of attachments is above the limit", "content-related"),
    # our login, the TLS we require, a message's lifetime, a connection the other side closed
    ("SMTP login rejected for user alerts", "bad-configuration"),
    ("Encryption required, but the server offers no STARTTLS", "bad-configuration"),
    ("Message TTL exceeded, returning to sender", "message-expired"),
    ("The message was not delivered within the permitted period", "message-expired"),
    ("Peer closed connection during DATA", "bad-connection"),
    ("Socket exception while writing to mx.example.net", "bad-connection"),
])
def test_english_reasons_in_other_word_orders_get_their_category(text: str, category: str) -> None:
    assert bounce_category(550, None, text) == category
    assert bounce_category(None, None, text) == category
