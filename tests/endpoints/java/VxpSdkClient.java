// A Java client that speaks to /vxp as the VPCP SDK (SDKVXP 2.0.1) does, written from the shared reference
// vpcp-sdk.md (no third-party jar): one service object whose parameter map starts with timestamp and systemid and
// never loses a key, the XroadVnpt-* headers, the sign-header JSON in java.util.HashMap order, HMAC-SHA256 with
// javax.crypto, sendEdoc through HttpURLConnection (file + CRLF, application/octet-stream, hash-file without zero
// padding, the answer read as US-ASCII), getEdoc's base64 decoded as UTF-8 and saved to <dir>/<yyyy>/<M>/<docId>.edxml.
//
// Run with the source launcher (Java 11+): java VxpSdkClient.java ENDPOINT SYSTEMID SECRET COMMAND...
// Commands (one service object for all, as agency software keeps one):
//   send:FILE:MESSAGETYPE   list:MESSAGETYPE   getfirst:DIR (the first docId of the last list)
//   update:STATUS (that docId)   agencies
// Each call prints one line: the command, a tab, the answer's body.
import java.io.ByteArrayOutputStream;
import java.io.InputStream;
import java.io.OutputStream;
import java.net.HttpURLConnection;
import java.net.URL;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.Paths;
import java.security.MessageDigest;
import java.text.SimpleDateFormat;
import java.util.Base64;
import java.util.Calendar;
import java.util.Date;
import java.util.HashMap;
import java.util.Map;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import javax.crypto.Mac;
import javax.crypto.spec.SecretKeySpec;

public class VxpSdkClient {
    private final String endpoint;
    private final String secret;
    private final Map<String, String> params = new HashMap<>();
    private String lastDocId = null;

    VxpSdkClient(String endpoint, String systemId, String secret) {
        this.endpoint = endpoint;
        this.secret = secret;
        String ms = String.format("%04d", System.currentTimeMillis() % 1000);
        params.put("timestamp", new SimpleDateFormat("ddMMyyyy'T'HHmmss").format(new Date()) + "+" + ms);
        params.put("systemid", systemId);
    }

    static String quote(String s) {
        StringBuilder b = new StringBuilder("\"");
        for (char c : s.toCharArray()) {
            if (c == '"' || c == '\\') b.append('\\');
            b.append(c);
        }
        return b.append('"').toString();
    }

    static String hex(byte[] bytes, boolean pad) {
        StringBuilder b = new StringBuilder();
        for (byte x : bytes) {
            String h = Integer.toHexString(x & 0xff);
            if (pad && h.length() == 1) b.append('0');
            b.append(h);
        }
        return b.toString();
    }

    HttpURLConnection open(String method, String path) throws Exception {
        Map<String, String> signed = new HashMap<>();
        for (Map.Entry<String, String> e : params.entrySet()) signed.put("XroadVnpt-" + e.getKey(), e.getValue());
        StringBuilder json = new StringBuilder("{");
        StringBuilder keys = new StringBuilder();
        for (Map.Entry<String, String> e : signed.entrySet()) {
            if (json.length() > 1) { json.append(','); keys.append(';'); }
            json.append(quote(e.getKey())).append(':').append(quote(e.getValue()));
            keys.append(e.getKey().substring("XroadVnpt-".length()));
        }
        String signHeader = json.append('}').toString();
        Mac mac = Mac.getInstance("HmacSHA256");
        mac.init(new SecretKeySpec(secret.getBytes(StandardCharsets.UTF_8), "HmacSHA256"));
        String hash = hex(mac.doFinal(signHeader.getBytes(StandardCharsets.UTF_8)), true);
        HttpURLConnection c = (HttpURLConnection) new URL(endpoint + path).openConnection();
        c.setRequestMethod(method);
        for (Map.Entry<String, String> e : signed.entrySet()) c.setRequestProperty(e.getKey(), e.getValue());
        c.setRequestProperty("Content-Type", params.get("Content-Type"));
        c.setRequestProperty("XroadVnpt-sign-header", signHeader);
        c.setRequestProperty("XroadVnpt-sign-header-key", keys.toString());
        c.setRequestProperty("XroadVnpt-hash-header", hash);
        c.setRequestProperty("XroadVnpt-version", "3.0.201608");
        c.setRequestProperty("User-Agent", "JAVASDKAgent/1.0.0 XRoad/VPCP");
        return c;
    }

    static String read(HttpURLConnection c) throws Exception {
        int code = c.getResponseCode();
        InputStream in = (code == 200 || code == 201) ? c.getInputStream() : c.getErrorStream();
        if (in == null) return "";
        ByteArrayOutputStream out = new ByteArrayOutputStream();
        in.transferTo(out);
        return out.toString(StandardCharsets.US_ASCII);
    }

    String post(String path, Map<String, String> arg, byte[] body) throws Exception {
        params.put("Content-Type", "application/json");
        params.putAll(arg);
        HttpURLConnection c = open("POST", path);
        c.setDoOutput(true);
        try (OutputStream out = c.getOutputStream()) { out.write(body); }
        return read(c);
    }

    String sendEdoc(Path file, String messageType) throws Exception {
        byte[] data = Files.readAllBytes(file);
        params.put("Content-Type", "application/octet-stream");
        params.put("from", params.get("systemid"));
        params.put("servicetype", "eDoc");
        params.put("messagetype", messageType);
        params.put("hash-file", hex(MessageDigest.getInstance("SHA-256").digest(data), false));
        HttpURLConnection c = open("POST", "/sendEdoc");
        c.setDoOutput(true);
        try (OutputStream out = c.getOutputStream()) {
            out.write(data);
            out.write("\r\n".getBytes(StandardCharsets.US_ASCII));
        }
        return read(c);
    }

    String getFirst(String dir) throws Exception {
        String answer = post("/getEdoc", Map.of("docId", lastDocId, "filePath", dir), "{}".getBytes());
        Matcher m = Pattern.compile("\"data\":\"([^\"]*)\"").matcher(answer);
        if (answer.contains("\"ErrorCode\":\"0\"") && m.find()) {
            String text = new String(Base64.getMimeDecoder().decode(m.group(1)), StandardCharsets.UTF_8);
            Calendar now = Calendar.getInstance();
            Path out = Paths.get(dir, String.valueOf(now.get(Calendar.YEAR)),
                                 String.valueOf(now.get(Calendar.MONTH) + 1), lastDocId + ".edxml");
            Files.createDirectories(out.getParent());
            Files.write(out, text.getBytes(StandardCharsets.UTF_8));
        }
        return answer;
    }

    public static void main(String[] args) throws Exception {
        VxpSdkClient sdk = new VxpSdkClient(args[0], args[1], args[2]);
        for (int i = 3; i < args.length; i++) {
            String[] cmd = args[i].split(":", 3);
            String answer;
            switch (cmd[0]) {
                case "send": answer = sdk.sendEdoc(Paths.get(cmd[1]), cmd[2]); break;
                case "list":
                    answer = sdk.post("/getReceivedEdocList", Map.of("servicetype", "eDoc", "messagetype", cmd[1]),
                                      new byte[0]);
                    Matcher m = Pattern.compile("\"docId\":\"([^\"]*)\"").matcher(answer);
                    sdk.lastDocId = m.find() ? m.group(1) : null;
                    break;
                case "getfirst": answer = sdk.getFirst(cmd[1]); break;
                case "update":
                    answer = sdk.post("/updateStatus", Map.of("docId", sdk.lastDocId, "status", cmd[1]), "{}".getBytes());
                    break;
                case "agencies": answer = sdk.post("/getAgenciesList", Map.of(), new byte[0]); break;
                default: throw new IllegalArgumentException(args[i]);
            }
            System.out.println(args[i] + "\t" + answer);
        }
    }
}
